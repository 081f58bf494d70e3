"""Where PPO's rollouts come from: this process (on-policy), or a worker process that overlaps them
with the update.

On one core a PPO iteration is a rollout (the simulator, about 75% of the time) followed by the update
and the KL to the base (the rest), one after the other. :class:`OverlappedRollouts` moves the
simulator and the sampling policy into a second process: while the learner updates on rollout ``k``,
the worker already collects rollout ``k + 1`` with the weights the learner had before that update.
Each rollout is therefore one update stale. Its log-probabilities are the worker's own, so PPO's
ratio is taken against the policy that really acted and the clip bounds the extra step, as in
asynchronous actor-learner PPO. Both classes have one method, :meth:`next`, so the training loop
reads the same either way.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import traceback
from dataclasses import dataclass

import torch

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


def _make_env(spec: RolloutSpec):
    from vla_razor.envs import make_vec_env

    return make_vec_env(spec.task, num_envs=spec.num_envs, backend="cpu", chunk_size=spec.chunk_size,
                        reward_mode=spec.reward_mode, vectorization=spec.vectorization)


class InlineRollouts:
    """Rollouts collected in this process with the current weights: plain on-policy PPO."""

    def __init__(self, spec: RolloutSpec, generator: torch.Generator):
        self.spec, self.generator = spec, generator
        self.env = _make_env(spec)
        self.obs, _ = self.env.reset(seed=spec.reset_seed)

    def next(self, policy, critic) -> Rollout:
        policy.eval()
        rollout, self.obs = collect(self.env, policy, self.obs, self.spec.num_decisions, self.generator, critic,
                                    self.spec.gamma, self.spec.reward_scale)
        return rollout

    def close(self) -> None:
        self.env.close()


class RolloutWorkerError(RuntimeError):
    """The rollout worker process failed; the message carries its traceback."""


def _weights(policy, critic) -> bytes:
    return pickle.dumps((policy.state_dict(), critic.state_dict()), protocol=pickle.HIGHEST_PROTOCOL)


def _worker_main(conn, spec: RolloutSpec, modules: bytes) -> None:
    """The worker: owns the env and a copy of policy and critic; one rollout per weights message."""
    env = None
    try:
        from vla_razor.finetune import tune_malloc

        tune_malloc()
        torch.set_num_threads(spec.threads)
        policy, critic = pickle.loads(modules)
        policy.eval()
        generator = torch.Generator().manual_seed(spec.sampling_seed)
        env = _make_env(spec)
        obs, _ = env.reset(seed=spec.reset_seed)
        conn.send_bytes(pickle.dumps(("ready", None)))
        while True:
            kind, payload = pickle.loads(conn.recv_bytes())
            if kind == "stop":
                break
            policy_state, critic_state = pickle.loads(payload)
            policy.load_state_dict(policy_state)
            critic.load_state_dict(critic_state)
            rollout, obs = collect(env, policy, obs, spec.num_decisions, generator, critic, spec.gamma, spec.reward_scale)
            conn.send_bytes(pickle.dumps(("rollout", rollout), protocol=pickle.HIGHEST_PROTOCOL))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # the learner went away: nothing to report to
    except BaseException:  # noqa: BLE001 - every failure must reach the learner, with its traceback
        try:
            conn.send_bytes(pickle.dumps(("error", traceback.format_exc())))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if env is not None:
            env.close()


class OverlappedRollouts:
    """Rollouts collected by a worker process while the learner updates (two cores, one update stale).

    ``next(policy, critic)`` returns the rollout that was asked for at the previous call and
    immediately asks for the following one with the weights passed now, so the worker simulates
    while the caller updates. The first call also asks for (and waits on) one rollout.
    """

    def __init__(self, spec: RolloutSpec, policy, critic, start_timeout_s: float = 300.0):
        context = mp.get_context("spawn")  # a fresh interpreter: no forked torch threads or simulator state
        self._conn, child = context.Pipe()
        modules = pickle.dumps((policy, critic), protocol=pickle.HIGHEST_PROTOCOL)
        self._process = context.Process(target=_worker_main, args=(child, spec, modules), daemon=True,
                                        name="vla-razor-rollouts")
        self._process.start()
        child.close()
        self._pending = False
        self._receive("ready", start_timeout_s)

    def _receive(self, expected: str, timeout_s: float | None = None):
        if timeout_s is not None and not self._conn.poll(timeout_s):
            self.close()
            raise RolloutWorkerError(f"the rollout worker sent nothing in {timeout_s:.0f} s (expected {expected!r})")
        try:
            kind, payload = pickle.loads(self._conn.recv_bytes())
        except (EOFError, ConnectionResetError):
            code = self._process.exitcode
            self.close()
            raise RolloutWorkerError(f"the rollout worker process died (exit code {code}) before sending {expected!r}; "
                                     "rerun with async_rollouts=false to see the failure in this process") from None
        if kind == "error":
            self.close()
            raise RolloutWorkerError(f"the rollout worker failed:\n{payload}")
        return payload

    def _request(self, policy, critic) -> None:
        self._conn.send_bytes(pickle.dumps(("collect", _weights(policy, critic))))
        self._pending = True

    def next(self, policy, critic) -> Rollout:
        if not self._pending:
            self._request(policy, critic)
        rollout = self._receive("rollout")
        self._request(policy, critic)
        return rollout

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send_bytes(pickle.dumps(("stop", None)))
            except (BrokenPipeError, OSError):
                pass
            # A worker in the middle of a rollout reads the stop only afterwards: do not wait for that.
            self._process.join(timeout=0.5)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=10)
        self._conn.close()
