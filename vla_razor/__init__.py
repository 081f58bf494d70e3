"""vla-razor: fine-tune robot VLA policies with RL or SFT and measure the KL to the base policy and the
forgetting it causes."""

__version__ = "0.1.0"
