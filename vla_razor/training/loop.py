"""What every training loop shares, on both tracks: robot and LLM, pretraining and fine-tuning.

A loop (PPO, GRPO, SFT, pretraining) owns its updates; :class:`TrainingLoop` owns the rest, in one
place and one format:

- the run directory (:class:`~vla_razor.rundir.RunDir`) and the counters (``iteration``, ``env_steps``),
  advanced by :meth:`TrainingLoop.step`;
- checkpoints that ``--resume`` continues from: the registered modules, optimizers, schedulers and
  generator, torch's global RNG and the counters, in one layout for every loop;
- the NaN guard: :meth:`TrainingLoop.check_finite` before ``backward`` raises
  :class:`~vla_razor.errors.NonFiniteError` (the CLI's exit code 3) naming the quantity, the iteration
  and the last good checkpoint, which is left in place;
- the progress bar, the evaluation and checkpoint schedules.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vla_razor.errors import CheckpointError, ConfigError, NonFiniteError
from vla_razor.progress import progress
from vla_razor.rundir import RunDir

from .config import TrainerConfig
from .distributed import DataParallel, data_parallel


class TrainingLoop:
    """The run directory, counters, checkpoints, NaN guard and progress of one training run.

    ``data_parallel``: the loop runs on every rank ``torchrun`` starts (:mod:`.distributed`); only rank 0
    writes the run directory, checkpoints and progress. A loop that does not set it refuses to start
    under torchrun with more than one rank."""

    def __init__(self, cfg: TrainerConfig, name: str, resume: bool = False, data_parallel_ok: bool = False):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not data_parallel_ok:
            raise ConfigError(
                f"{type(self).__name__} ({name}) runs on one rank, but torchrun started {world}: "
                "data-parallel learners are PPO's (vla-razor finetune --algo ppo; docs/scaling.md)"
            )
        device = getattr(cfg, "device", "cpu")  # NCCL when the model is on a GPU, else gloo
        self.dp: DataParallel = data_parallel(device) if data_parallel_ok else DataParallel()
        if self.dp.main:
            self.run = RunDir.create(cfg.runs_dir, name, cfg, resume=resume)
        self.dp.barrier()  # the other ranks open the directory rank 0 made (to read checkpoints only)
        if not self.dp.main:
            self.run = RunDir(Path(cfg.runs_dir) / name)
        self.iteration = 0
        self.env_steps = 0
        self.total, self.unit = 0, "iteration"
        self.bar: tqdm | None = None
        self._state: tuple[dict, dict, torch.Generator | None] = ({}, {}, None)

    # -- counters and schedules ------------------------------------------------------------------
    def step(self, env_steps: int = 0) -> None:
        """Count one finished iteration (and the environment steps it took)."""
        self.iteration += 1
        self.env_steps += env_steps

    @property
    def progress_count(self) -> int:
        return self.env_steps if self.unit == "env step" else self.iteration

    @property
    def done(self) -> bool:
        """Whether the budget given to :meth:`start` is used up."""
        return self.progress_count >= self.total

    def due(self, every: int) -> bool:
        """Whether a periodic event with period ``every`` (0: never) falls on this iteration, before the end
        (the end has its own, final, evaluation)."""
        return bool(every) and self.iteration % every == 0 and not self.done

    def start(self, total: int, unit: str = "iteration", desc: str = "") -> tqdm | None:
        """Set the budget (``total`` iterations, or env steps with ``unit='env step'``) and open the progress
        bar (one line per update when the output is not a terminal)."""
        self.total, self.unit = total, unit
        if not self.dp.main:
            return None
        self.bar = progress(
            total=total, initial=min(self.progress_count, total), desc=desc, unit=unit, dynamic_ncols=True
        )
        return self.bar

    def advance(self, before: int, postfix: dict | None = None) -> None:
        """Move the progress bar from the count ``before`` to the current count."""
        if self.bar is not None:
            self.bar.update(self.progress_count - before)
            if postfix:
                self.bar.set_postfix(postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # -- checkpoints -----------------------------------------------------------------------------
    def restore(
        self,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, Any],
        generator: torch.Generator | None = None,
        unit: str = "iteration",
    ) -> dict:
        """Register what checkpoints hold (modules, and optimizers or LR schedulers: anything with a
        ``state_dict``), then load the latest checkpoint into it, if there is one; returns its extras."""
        self._state = (modules, optimizers, generator)
        found = self.run.load_latest_checkpoint()
        if found is None:
            if self.dp.main:
                self.run.truncate_metrics(
                    0
                )  # a killed first attempt may have logged before its first checkpoint
            return {}
        path, _, state = found
        missing = [k for k in [*modules, *optimizers, "torch_rng", "iteration"] if k not in state]
        if missing:
            raise CheckpointError(
                f"{path} lacks {', '.join(missing)}: it was written by another loop or an older version; "
                "start the run again under a new name"
            )
        device = _device_of(next(iter(modules.values()))) if modules else None
        for key, module in modules.items():
            module.load_state_dict({k: v.to(device) for k, v in state[key].items()})
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state[key])
        if generator is not None:
            generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration, self.env_steps = int(state["iteration"]), int(state["env_steps"])
        if self.dp.main:
            self.run.truncate_metrics(self.iteration)
        extra = state.get("extra", {})
        self.restore_extra(extra)
        steps = f" ({self.env_steps} env steps)" if self.env_steps else ""
        if self.dp.main:
            tqdm.write(f"resuming {self.run.path} from {unit} {self.iteration}{steps}")
        return extra

    def restore_extra(self, extra: dict) -> None:
        """Hook: what a subclass keeps in a checkpoint's extras (see :meth:`checkpoint_extra`)."""

    def checkpoint_extra(self) -> dict:
        """Hook: the subclass's own state for the checkpoint (plain JSON values)."""
        return {}

    def checkpoint(self, extra: dict | None = None) -> Any:
        """Save what :meth:`restore` registered, with the counters (rank 0; the others return None)."""
        if not self.dp.main:
            return None
        modules, optimizers, generator = self._state
        state: dict[str, Any] = {key: m.state_dict() for key, m in modules.items()}
        state.update({key: o.state_dict() for key, o in optimizers.items()})
        if generator is not None:
            state["generator"] = generator.get_state()
        state.update(
            torch_rng=torch.get_rng_state(),
            iteration=self.iteration,
            env_steps=self.env_steps,
            extra={**self.checkpoint_extra(), **(extra or {})},
        )
        return self.run.save_checkpoint(self.iteration, state)

    def checkpoint_if_due(self) -> None:
        if self.iteration % self.cfg.checkpoint_every == 0 or self.done:
            self.checkpoint()

    # -- metrics ---------------------------------------------------------------------------------
    def check_finite(self, **values: float | torch.Tensor) -> None:
        """Stop the run on a NaN or inf (call it before ``backward``): :class:`NonFiniteError` names the
        quantity, the iteration and the last good checkpoint."""
        for name, value in values.items():
            tensor = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value)
            if not bool(torch.isfinite(tensor).all()):
                shown = float(tensor) if tensor.numel() == 1 else "non-finite"
                self._stop(f"{name} is {shown} at iteration {self.iteration + 1}")

    def check_weights(self, module: torch.nn.Module, what: str = "the policy") -> None:
        """Stop the run if an update left a NaN or inf in ``module``'s weights (call it once per iteration,
        after the updates: a step that overflows the weights leaves every later loss, sample and KL NaN)."""
        for name, tensor in module.named_parameters():
            if not bool(torch.isfinite(tensor.detach()).all()):
                self._stop(
                    f"{what}'s weight {name} holds NaN or inf after the updates of iteration {self.iteration}"
                )

    def _stop(self, what: str) -> None:
        latest = self.run.latest_checkpoint()
        where = (
            f"The last good checkpoint is {latest} (resume from it with a lower lr or a KL penalty)"
            if latest
            else "No checkpoint was written yet: start again with a lower lr"
        )
        raise NonFiniteError(f"{what}; the run stopped. {where}")

    def log(self, metrics: dict) -> None:
        if not self.dp.main:
            return
        self.run.log(self.iteration, {"env_steps": self.env_steps, **metrics})


def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")
