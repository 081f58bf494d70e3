"""A penalty toward the frozen base policy: what to penalise and how its coefficient moves.

One configuration for both tracks (robot chains and LLM tokens); each track computes the divergence its
own way (:class:`vla_razor.base_kl.KLPenalty` on denoising chains, :mod:`vla_razor.llm.kl` on tokens) and
shares the coefficient rule here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from vla_razor.config import Config, NonNegativeFloat, PositiveFloat, Range

PenaltyKind = Literal["none", "fixed", "adaptive"]
PenaltyDirection = Literal["forward", "reverse", "js"]


@dataclass
class KLPenaltyConfig(Config):
    kind: PenaltyKind = "none"
    """'none' (as in the paper: the KL is measured, not optimised), 'fixed' or 'adaptive' coefficient."""
    direction: PenaltyDirection = "reverse"
    """Which divergence to the base is penalised: 'forward' (on base samples), 'reverse' (on the policy's
    own samples) or 'js' (Jensen-Shannon, one-sample estimate on the rollout's chains; robot track only)."""
    coef: NonNegativeFloat = 0.01
    """Penalty coefficient (the starting value for 'adaptive')."""
    target: PositiveFloat = 1.0
    """'adaptive': the KL (nats per state) the coefficient steers toward (doubled above 1.5x, halved below
    /1.5)."""
    critical_weighting: bool = False
    """Lower the penalty where the base policy is uncertain (the critical states or tokens of "Ignore the
    KL Penalty!"): on the robot, weight min(1, median(u) / u(s)) with u(s) the spread of the base's actions
    at s; on tokens, the base's max-probability."""
    critical_samples: Annotated[int, Range(ge=2)] = 4
    """Robot track: base action samples per state used to measure u(s)."""


class PenaltyCoefficient:
    """The penalty's coefficient: fixed, or PPO's adaptive-KL rule steering the measured KL to a target."""

    def __init__(self, config: KLPenaltyConfig):
        self.config = config
        self.coef = config.coef

    @property
    def active(self) -> bool:
        return self.config.kind != "none"

    @property
    def measured(self) -> str:
        """The logged metric the coefficient follows: ``kl/forward`` or ``kl/reverse``."""
        return "kl/forward" if self.config.direction == "forward" else "kl/reverse"

    def update(self, measured: float) -> None:
        """Adaptive coefficient from this iteration's measured divergence (a no-op unless 'adaptive')."""
        if self.config.kind != "adaptive":
            return
        if measured > 1.5 * self.config.target:
            self.coef *= 2.0
        elif measured < self.config.target / 1.5:
            self.coef /= 2.0
        self.coef = min(max(self.coef, 1e-6), 1e3)
