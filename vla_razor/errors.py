"""Errors the command line reports as a message (exit code 2) rather than a traceback."""


class NoRLDataError(ValueError):
    """The SFT-on-RL-data control found no successful rollout of the RL policy to clone."""
