"""Policy families behind one interface (installed as ``vla_razor.policies``).

``make_policy(family, config)`` builds one; ``ChainPolicy.from_pretrained(dir)`` loads any family.
"""

from .base import POLICY_CLASSES, Chain, ChainPolicy, register_policy
from .factory import make_policy

__all__ = ["Chain", "ChainPolicy", "POLICY_CLASSES", "make_policy", "register_policy"]
