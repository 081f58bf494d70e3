"""Policy families behind one interface (installed as ``vla_razor.policies``).

``make_policy(family, config)`` builds one; ``ChainPolicy.from_pretrained(dir)`` loads any family. Each family
registers its config class when its configuration module is imported (below, every family's: light modules);
its modeling module is imported only when a policy of it is built or loaded (:mod:`.registry`).
"""

from . import (  # noqa: F401  (each registers its family's config class)
    diffusion,
    flow,
    gaussian,
    lerobot_diffusion,
    lerobot_pi0,
    lerobot_pi05,
    lerobot_smolvla,
)
from .base import Chain, ChainPolicy, PolicyConfig
from .factory import make_policy
from .registry import FAMILIES, policy_class, register_family

__all__ = [
    "FAMILIES",
    "Chain",
    "ChainPolicy",
    "PolicyConfig",
    "make_policy",
    "policy_class",
    "register_family",
]
