"""Data-parallel learners: N ranks of one training run, started by ``torchrun`` (docs/scaling.md).

``torchrun --nproc-per-node N -m vla_razor.cli finetune --algo ppo ...`` sets ``RANK``, ``WORLD_SIZE``
and the rendezvous variables; :func:`data_parallel` reads them and joins the process group (gloo on
CPU, NCCL when the policy lives on a GPU). Without them it returns the single-rank context, whose
every method is the identity, so a loop reads the same on one rank and on many.

What the ranks share and what each owns:

- each rank owns ``num_envs / N`` sub-envs (seeded as the same sub-envs would be on one rank) and
  collects its share of every rollout;
- an update's gradients are summed over the ranks after each rank weighted its loss by its share of
  the global minibatch, so the step equals one rank's step on the whole minibatch;
- metrics (the KL to the base among them) are reduced over the ranks before anyone reads them;
- rank 0 alone writes the run directory, checkpoints, evaluations and videos; a resumed run's ranks
  all load rank 0's latest checkpoint.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from vla_razor.errors import ConfigError

#: How long a rank waits for the others at a collective: rank 0 evaluates and records videos while the
#: others wait at their next reduction, which takes minutes in a long run.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DataParallel:
    """This process's place among the learner ranks (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    collective_device: str = "cpu"
    """Where the collectives run: 'cpu' under gloo, this rank's GPU under NCCL (which reduces GPU tensors
    only)."""

    @property
    def main(self) -> bool:
        """Whether this rank writes the run directory (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, total: int, what: str = "num_envs") -> int:
        """This rank's share of ``total`` (which the world size must divide)."""
        if total % self.world:
            raise ConfigError(
                f"{what} ({total}) must be a multiple of the number of learner ranks ({self.world})"
            )
        return total // self.world

    # -- collectives (identity on one rank) -------------------------------------------------------
    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over the ranks (in place; also returned)."""
        if self.active:
            import torch.distributed as dist

            if tensor.device == torch.device(self.collective_device):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            else:
                moved = tensor.to(self.collective_device)
                dist.all_reduce(moved, op=dist.ReduceOp.SUM)
                tensor.copy_(moved)
        return tensor

    def sum_values(self, values: list[float]) -> list[float]:
        """Plain numbers summed over the ranks, in one collective."""
        if not self.active:
            return list(values)
        return self.all_sum(torch.tensor(values, dtype=torch.float64)).tolist()

    def sum_gradients(self, parameters) -> None:
        """Sum every parameter's gradient over the ranks in one collective; a parameter without a gradient
        on this rank (it saw no sample of the minibatch) contributes zeros."""
        if not self.active:
            return
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self.all_sum(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank."""
        if not self.active:
            return
        import torch.distributed as dist

        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device == torch.device(self.collective_device):
                dist.broadcast(tensor.data, src=0)
            else:
                moved = tensor.data.to(self.collective_device)
                dist.broadcast(moved, src=0)
                tensor.data.copy_(moved)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def mean_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics measured on each rank's own states -> over all states: means of the ranks' means (equal
        shares), standard errors of those means (``*_stderr``), sums of counts (``*/states``)."""
        if not self.active:
            return dict(metrics)
        keys = sorted(metrics)
        values = [float(metrics[k]) ** 2 if k.endswith("_stderr") else float(metrics[k]) for k in keys]
        summed = dict(zip(keys, self.sum_values(values)))
        out = {}
        for k in keys:
            if k.endswith("_stderr"):
                out[k] = summed[k] ** 0.5 / self.world
            elif k.endswith("/states"):
                out[k] = summed[k]
            else:
                out[k] = summed[k] / self.world
        return out

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


_CURRENT: DataParallel | None = None


def data_parallel(device: torch.device | str = "cpu") -> DataParallel:
    """The learner ranks of this process: joins torchrun's process group once (gloo on CPU, NCCL on CUDA),
    or rank 0 of 1 without torchrun."""
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _CURRENT = DataParallel()
        return _CURRENT
    import torch.distributed as dist

    backend = os.environ.get("VLA_RAZOR_DIST_BACKEND") or (
        "nccl" if torch.device(device).type == "cuda" else "gloo"
    )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    collective = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu"
    _CURRENT = DataParallel(rank=dist.get_rank(), world=dist.get_world_size(), collective_device=collective)
    return _CURRENT


def release() -> None:
    """Leave the process group (the end of a run)."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.close()
    _CURRENT = None
