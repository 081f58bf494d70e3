"""Evaluation envs are kept between evaluations: a kept env, reset with the evaluation's seeds, runs the very
episodes a new env runs (same observations, same successes), and the pool stays bounded."""

import pytest
import torch

from vla_razor import evaluation
from vla_razor.evaluation import close_evaluation_envs, evaluate_task
from vla_razor.policies import make_policy

TINY = {"hidden": 32, "num_layers": 1, "num_heads": 4, "chunk_size": 4, "num_steps": 2}


def _run(policy, task="PullCube", seed=3):
    observations = []
    rate = evaluate_task(
        policy, task, 2, seed=seed, mode="stochastic", max_episode_steps=12, observations=observations
    )
    return rate, observations


def _same(a, b):
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_a_kept_evaluation_env_runs_the_episodes_of_a_new_one(monkeypatch):
    torch.manual_seed(0)
    policy = make_policy("flow", TINY, embed_language=False)
    close_evaluation_envs()
    try:
        fresh_rate, fresh = _run(policy)
        assert len(evaluation._EVAL_ENVS) == 1
        kept = next(iter(evaluation._EVAL_ENVS.values()))
        _run(policy, seed=11)  # other episodes in between: the kept env's state moves on
        again_rate, again = _run(policy)
        assert next(iter(evaluation._EVAL_ENVS.values())) is kept and len(evaluation._EVAL_ENVS) == 1
        assert again_rate == fresh_rate and _same(fresh, again)
        _, other = _run(policy, seed=11)
        assert not _same(fresh, other)  # the observations compared do tell episodes apart
        # the pool is bounded: the least recently used env is closed and dropped
        monkeypatch.setattr(evaluation, "MAX_EVAL_ENVS", 1)
        _run(policy, task="PushCube")
        assert len(evaluation._EVAL_ENVS) == 1 and kept not in evaluation._EVAL_ENVS.values()
        # an evaluation that fails mid-episode drops its env: the next one starts from a new env
        monkeypatch.setattr(policy, "sample", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            _run(policy, task="PushCube")
        assert not evaluation._EVAL_ENVS
    finally:
        close_evaluation_envs()
