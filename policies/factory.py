"""``make_policy(family, config)``: the small registry of policy families."""
from __future__ import annotations

from typing import Any

from .base import ChainPolicy, PolicyConfig
from .diffusion import DiffusionConfig, DiffusionPolicy
from .flow import FlowConfig, FlowPolicy
from .gaussian import GaussianConfig, GaussianPolicy

POLICY_CLASSES: dict[str, type[ChainPolicy]] = {
    FlowPolicy.family: FlowPolicy,
    DiffusionPolicy.family: DiffusionPolicy,
    GaussianPolicy.family: GaussianPolicy,
}


def make_policy(family: str, config: PolicyConfig | dict[str, Any] | None = None, **kwargs) -> ChainPolicy:
    """A fresh policy of ``family`` from a config object, a dict of config fields, or defaults."""
    if family not in POLICY_CLASSES:
        raise ValueError(f"unknown policy family {family!r}; known: {', '.join(POLICY_CLASSES)}")
    cls = POLICY_CLASSES[family]
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        from vla_razor.config import _build

        config = _build(cls.config_class, config, "", f"{family} policy config")
    return cls(config, **kwargs)
