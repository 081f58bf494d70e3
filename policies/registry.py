"""The policy families by name (LeRobot's pattern): each family's configuration module registers its config
class with :func:`register_family`, naming the class that models it; that modeling module is imported only
when a policy of the family is built or loaded (:func:`policy_class`). ``vla_razor.policies`` imports the
configuration modules alone, so importing the package (or :mod:`.base`) imports no family's modeling code and
nothing of LeRobot.

Adding a family: a folder ``policies/<name>/`` with ``configuration_<name>.py`` (a
:class:`~.base.PolicyConfig` subclass decorated
``@register_family("<name>", "vla_razor.policies.<name>.modeling_<name>:<Class>")``) and
``modeling_<name>.py`` (the :class:`~.base.ChainPolicy` subclass, ``family = "<name>"``), and one import line
in ``policies/__init__.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One registered policy family."""

    name: str
    config_class: type
    modeling: str
    """``"package.module:Class"`` of the :class:`~.base.ChainPolicy` subclass, imported on demand."""
    lerobot_type: str | None = None
    """The ``"type"`` in the ``config.json`` of a LeRobot policy directory this family loads (None: a
    vla-razor family, saved with ``"family"``)."""


FAMILIES: dict[str, Family] = {}
"""Every registered family by name."""


def register_family(name: str, modeling: str, lerobot_type: str | None = None):
    """Class decorator of a family's config class: registers the family ``name`` with the modeling class
    ``"module:Class"`` (and, for a LeRobot family, the LeRobot policy type it loads)."""

    def decorate(config_class: type) -> type:
        known = FAMILIES.get(name)
        if known is not None and known.config_class is not config_class:
            raise ValueError(
                f"policy family {name!r} is registered twice: {known.config_class.__qualname__} and "
                f"{config_class.__qualname__}"
            )
        FAMILIES[name] = Family(name, config_class, modeling, lerobot_type)
        return config_class

    return decorate


def policy_class(name: str) -> type:
    """The modeling class of family ``name``, its module imported now (a KeyError naming the known families
    when there is no such family)."""
    family = FAMILIES.get(name)
    if family is None:
        raise KeyError(f"unknown policy family {name!r}; known: {', '.join(FAMILIES)}")
    module, _, attribute = family.modeling.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if cls.family != name:
        raise TypeError(f"{family.modeling} models family {cls.family!r}, not {name!r}")
    return cls


def lerobot_family(lerobot_type: str) -> str | None:
    """The family that loads LeRobot policies of ``lerobot_type`` (None when no family does)."""
    return next((f.name for f in FAMILIES.values() if f.lerobot_type == lerobot_type), None)


def lerobot_types() -> list[str]:
    """The LeRobot policy types some family loads."""
    return [f.lerobot_type for f in FAMILIES.values() if f.lerobot_type]
