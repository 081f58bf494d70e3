"""``make_policy(family, config)``: a fresh policy of any registered family (:func:`.base.register_policy`)."""

from __future__ import annotations

from typing import Any

from . import diffusion, flow, gaussian  # noqa: F401  (each family registers itself on import)
from .base import POLICY_CLASSES, ChainPolicy, PolicyConfig


def make_policy(family: str, config: PolicyConfig | dict[str, Any] | None = None, **kwargs) -> ChainPolicy:
    """A fresh policy of ``family`` from a config object, a dict of config fields, or defaults."""
    if family not in POLICY_CLASSES:
        raise ValueError(f"unknown policy family {family!r}; known: {', '.join(POLICY_CLASSES)}")
    cls = POLICY_CLASSES[family]
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        from vla_razor.config import build_config

        config = build_config(cls.config_class, config, "", f"{family} policy config")
    return cls(config, **kwargs)
