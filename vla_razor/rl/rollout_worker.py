"""Where PPO's rollouts come from: this process (on-policy), or rollout workers that overlap them with
the update.

On one core a PPO iteration is a rollout (the simulator, about 75% of the time) followed by the update
and the KL to the base (the rest), one after the other. :class:`OverlappedRollouts` moves the
simulator and the sampling policy into Ray actors: while the learner updates on rollout ``k``, the
actors already collect rollout ``k + 1`` with the weights the learner had before that update. Each
rollout is therefore one update stale. Its log-probabilities are the actors' own (the policy that
really acted); PPO's decoupled clip (rl/ppo.py, ``decoupled_clip``) uses them to weight the terms while
clipping around the learner's own weights. Both classes have one method, :meth:`next`, so the training
loop reads the same either way.

The actors live on a local Ray (started for the run, or the one a sweep's Ray task already runs in) or
on the cluster at ``ray_address``. Ray actors were measured against worker processes spawned by the
learner, side by side, and cost nothing (docs/benchmarks.md), so they are the one implementation.
"""

from __future__ import annotations

import dataclasses
import io
import os
import traceback
from dataclasses import dataclass

import torch

from vla_razor.errors import WorkerError
from vla_razor.runtime import ray_session, tune_malloc
from vla_razor.seeding import RANK_STRIDE

from .rollout import Rollout, collect


@dataclass
class RolloutSpec:
    """What a rollout source needs besides the weights: the env, the decisions and the reward shaping."""

    task: str
    num_envs: int
    chunk_size: int
    reward_mode: str
    vectorization: str
    num_decisions: int
    gamma: float
    reward_scale: float
    reset_seed: int
    """First sub-env seed of the first reset."""
    sampling_seed: int
    """Seed of the sampling generator (the worker's own)."""
    threads: int = 1
    backend: str = "cpu"
    """The simulator: 'cpu' (physx_cpu scenes) or 'gpu' (ManiSkill's batched physx_cuda, tensors on the
    GPU)."""
    obs_mode: str = "state"
    """What the policy observes: 'state', or 'rgb' (state and camera images)."""
    image_size: int = 64
    """Camera image side in pixels (obs_mode 'rgb')."""


def _make_env(spec: RolloutSpec):
    from vla_razor.envs import make_vec_env

    return make_vec_env(
        spec.task,
        num_envs=spec.num_envs,
        backend=spec.backend,
        obs_mode=spec.obs_mode,
        image_size=spec.image_size,
        chunk_size=spec.chunk_size,
        reward_mode=spec.reward_mode,
        vectorization=spec.vectorization,
    )


class InlineRollouts:
    """Rollouts collected in this process with the current weights: plain on-policy PPO."""

    def __init__(self, spec: RolloutSpec, generator: torch.Generator):
        self.spec, self.generator = spec, generator
        self.env = _make_env(spec)
        self.obs, _ = self.env.reset(seed=spec.reset_seed)

    def next(self, policy, critic) -> Rollout:
        policy.eval()
        rollout, self.obs = collect(
            self.env,
            policy,
            self.obs,
            self.spec.num_decisions,
            self.generator,
            critic,
            self.spec.gamma,
            self.spec.reward_scale,
        )
        return rollout

    def close(self) -> None:
        self.env.close()


class RolloutWorkerError(WorkerError):
    """A rollout worker process failed, died or stopped answering; the message says which and why."""


def _dumps(message) -> bytes:
    """Messages hold only tensors, dicts, lists, tuples, strings and numbers: torch's weights-only format."""
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def _loads(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=True)


def _rollout_fields(rollout: Rollout) -> dict:
    return {f.name: getattr(rollout, f.name) for f in dataclasses.fields(rollout)}


class _Collector:
    """What a rollout actor owns: the env and its own copies of the policy and the critic."""

    def __init__(self, spec: RolloutSpec, policy, critic):
        tune_malloc()
        torch.set_num_threads(spec.threads)
        self.spec, self.policy, self.critic = spec, policy.eval(), critic
        self.generator = torch.Generator().manual_seed(spec.sampling_seed)
        self.env = None  # set last: a failed env build leaves nothing to close
        self.env = _make_env(spec)
        self.obs, _ = self.env.reset(seed=spec.reset_seed)

    def collect(self, weights: bytes) -> bytes:
        """One rollout with the weights of a ``("collect", (policy_state, critic_state))`` message."""
        policy_state, critic_state = _loads(weights)[1]
        self.policy.load_state_dict(policy_state)
        self.critic.load_state_dict(critic_state)
        spec = self.spec
        rollout, self.obs = collect(
            self.env,
            self.policy,
            self.obs,
            spec.num_decisions,
            self.generator,
            self.critic,
            spec.gamma,
            spec.reward_scale,
        )
        return _dumps(("rollout", _rollout_fields(rollout)))

    def ready(self) -> bytes:
        return _dumps(("ready", None))

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def merge_rollouts(parts: list[Rollout]) -> Rollout:
    """One rollout from the workers' rollouts of disjoint sub-env blocks (joined along the sub-env axis)."""
    if len(parts) == 1:
        return parts[0]
    return Rollout(
        obs={k: torch.cat([p.obs[k] for p in parts], dim=1) for k in parts[0].obs},
        chains=torch.cat([p.chains for p in parts], dim=1),
        log_probs=torch.cat([p.log_probs for p in parts], dim=1),
        rewards=torch.cat([p.rewards for p in parts], dim=1),
        bootstrap=torch.cat([p.bootstrap for p in parts], dim=1),
        dones=torch.cat([p.dones for p in parts], dim=1),
        next_obs={k: torch.cat([p.next_obs[k] for p in parts], dim=0) for k in parts[0].next_obs},
        env_steps=sum(p.env_steps for p in parts),
        episode_successes=[s for p in parts for s in p.episode_successes],
    )


def split_spec(spec: RolloutSpec, workers: int) -> list[RolloutSpec]:
    """Per-worker specs: contiguous blocks of sub-envs, seeded as the same sub-envs would be in one
    process."""
    if workers < 1 or spec.num_envs % workers:
        raise ValueError(f"num_envs ({spec.num_envs}) must be a multiple of rollout_workers ({workers})")
    size = spec.num_envs // workers
    return [
        dataclasses.replace(
            spec,
            num_envs=size,
            reset_seed=spec.reset_seed + i * size,
            sampling_seed=spec.sampling_seed + RANK_STRIDE * i,
        )
        for i in range(workers)
    ]


class _RolloutActor:
    """The Ray actor: a :class:`_Collector` whose messages come through Ray's object store."""

    def __init__(self, spec: RolloutSpec, policy, critic):
        # A failure here would reach the learner as a bare "actor died": keep its traceback for ready().
        self.collector, self.failure = None, None
        try:
            self.collector = _Collector(spec, policy, critic)
        except Exception:  # noqa: BLE001
            self.failure = traceback.format_exc()

    def ready(self) -> bytes:
        if self.failure is not None:
            return _dumps(("error", self.failure))
        return self.collector.ready()

    def collect(self, weights: bytes) -> bytes:
        return self.collector.collect(weights)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()

    def pid(self) -> int:
        return os.getpid()


class _RayWorker:
    """One rollout actor on Ray (local, or wherever the cluster places it) and its pending result."""

    def __init__(self, ray, spec: RolloutSpec, policy, critic, index: int):
        self.ray, self.name = ray, f"vla-razor-rollouts-{index}"
        # num_cpus=0: an actor started from inside a sweep's Ray task (which holds a CPU) must not wait
        # for a free CPU that never comes; the simulator's threads are pinned by ``spec.threads``.
        actor_class = ray.remote(num_cpus=0, max_restarts=0)(_RolloutActor)
        self.actor = actor_class.options(name=f"{self.name}-{id(self)}").remote(spec, policy, critic)
        self.pending = self.actor.ready.remote()

    def request(self, weights) -> None:
        self.pending = self.actor.collect.remote(weights)

    def receive(self, expected: str, timeout_s: float | None = None):
        ray = self.ray
        try:
            kind, payload = _loads(ray.get(self.pending, timeout=timeout_s))
        except ray.exceptions.GetTimeoutError:
            ray.kill(self.actor)
            raise RolloutWorkerError(
                f"the rollout actor {self.name} sent nothing in {timeout_s:.0f} s (expected {expected!r}): "
                "it hangs; it was stopped. Raise worker_timeout_s if rollouts are really that slow, else "
                "--resume"
            ) from None
        except ray.exceptions.RayActorError as err:
            raise RolloutWorkerError(
                f"the rollout actor {self.name} died before sending {expected!r} ({str(err)[:300]}); rerun "
                "with rollout_workers=0 to see the failure in this process, then --resume from the last "
                "checkpoint"
            ) from None
        except ray.exceptions.RayTaskError as err:
            raise RolloutWorkerError(f"the rollout actor {self.name} failed:\n{err}") from None
        if kind == "error":
            raise RolloutWorkerError(f"the rollout actor {self.name} failed:\n{payload}")
        return payload

    def close(self) -> None:
        if not self.ray.is_initialized():  # the session ended, and took the actor; a call would start a Ray
            return
        try:
            self.ray.kill(self.actor)
        except Exception:  # noqa: BLE001 - already gone with its node or the session
            pass


class OverlappedRollouts:
    """Rollouts collected by Ray actors while the learner updates (one update stale).

    Each of ``workers`` actors owns a contiguous block of the sub-envs. ``next(policy, critic)`` returns
    the rollout that was asked for at the previous call and immediately asks for the following one with
    the weights passed now, so the actors simulate while the caller updates. The first call also asks for
    (and waits on) one rollout. The weights go into Ray's object store once per iteration, for every
    actor, in torch's weights-only format; an actor that dies or hangs is a :class:`RolloutWorkerError`.
    """

    def __init__(
        self,
        spec: RolloutSpec,
        policy,
        critic,
        workers: int = 1,
        start_timeout_s: float = 300.0,
        timeout_s: float | None = 600.0,
        ray_address: str | None = None,
    ):
        specs = split_spec(spec, workers)
        self._ray_session = ray_session(ray_address, workers)
        self._ray = self._ray_session.__enter__()
        self._workers = []
        try:
            self._workers = [_RayWorker(self._ray, s, policy, critic, i) for i, s in enumerate(specs)]
        except BaseException:
            self.close()
            raise
        self._pending = False
        self.timeout_s = timeout_s
        self._receive_all("ready", start_timeout_s)

    def _receive_all(self, expected: str, timeout_s: float | None = None) -> list:
        try:
            return [worker.receive(expected, timeout_s) for worker in self._workers]
        except RolloutWorkerError:
            self.close()
            raise

    def _request(self, policy, critic) -> None:
        weights = self._ray.put(_dumps(("collect", (policy.state_dict(), critic.state_dict()))))
        for worker in self._workers:
            worker.request(weights)
        self._pending = True

    def next(self, policy, critic) -> Rollout:
        if not self._pending:
            self._request(policy, critic)
        rollout = merge_rollouts(
            [Rollout(**fields) for fields in self._receive_all("rollout", self.timeout_s)]
        )
        self._request(policy, critic)
        return rollout

    def close(self) -> None:
        """Stop the actors and the Ray session this object started; a second call does nothing (a Ray call
        after the session's end would start a new local Ray that outlives this object)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()
        if self._ray_session is not None:
            session, self._ray_session = self._ray_session, None
            session.__exit__(None, None, None)
