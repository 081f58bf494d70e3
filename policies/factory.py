"""``make_policy(family, config)``: a fresh policy of any registered family (:mod:`.registry`)."""

from __future__ import annotations

from typing import Any

from vla_razor.config import build_config

from .base import ChainPolicy, PolicyConfig
from .registry import FAMILIES, policy_class


def make_policy(family: str, config: PolicyConfig | dict[str, Any] | None = None, **kwargs) -> ChainPolicy:
    """A fresh policy of ``family`` from a config object, a dict of config fields, or defaults."""
    if family not in FAMILIES:
        raise ValueError(f"unknown policy family {family!r}; known: {', '.join(FAMILIES)}")
    cls = policy_class(family)
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        config = build_config(cls.config_class, config, "", f"{family} policy config")
    return cls(config, **kwargs)
