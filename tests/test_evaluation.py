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
        # the pool is bounded in sub-envs: the least recently used env is closed and dropped
        monkeypatch.setattr(evaluation, "MAX_EVAL_SUB_ENVS", 3)
        _run(policy, task="PushCube")
        assert len(evaluation._EVAL_ENVS) == 1 and kept not in evaluation._EVAL_ENVS.values()
        # an evaluation that fails mid-episode drops its env: the next one starts from a new env
        monkeypatch.setattr(policy, "sample", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            _run(policy, task="PushCube")
        assert not evaluation._EVAL_ENVS
    finally:
        close_evaluation_envs()


def test_finished_episodes_are_not_stepped_and_the_evaluation_is_unchanged(monkeypatch):
    """Only unfinished episodes are stepped, and the evaluation is the one that steps every sub-env: the same
    episodes, observations and successes (the policy still samples every row, so its draws do not move)."""
    from envs.vector import InProcessVectorEnv

    torch.manual_seed(0)
    policy = make_policy("flow", TINY, embed_language=False)
    step = InProcessVectorEnv.step
    taken = []

    def counted(self, actions, running=None, step_all=False):
        out = step(self, actions, None if step_all else running)
        mask = running if running is not None else [True] * self.num_envs
        taken.append(sum(int(n) for n, m in zip(out[4]["chunk_steps"], mask) if m))
        return out

    def run(step_all):
        close_evaluation_envs()
        taken.clear()
        monkeypatch.setattr(InProcessVectorEnv, "step", lambda s, a, r=None: counted(s, a, r, step_all))
        observations = []
        rate = evaluate_task(
            policy, "PullCube", 4, seed=5, mode="stochastic", max_episode_steps=12, observations=observations
        )
        return rate, observations, sum(taken), len(taken)

    try:
        masked, every = run(False), run(True)
    finally:
        close_evaluation_envs()
    assert masked[0] == every[0] and _same(masked[1], every[1])
    assert masked[2] == every[2] and masked[3] == every[3]  # the same episode steps, decision by decision

    # a sub-env left out keeps its observation and is not stepped
    from vla_razor.envs import make_vec_env

    env = make_vec_env("PullCube", num_envs=2, backend="cpu", chunk_size=4)
    try:
        obs, _ = env.reset(seed=0)
        chunk = torch.zeros(env.action_space.shape).numpy()
        moved, _, terminated, truncated, info = env.step(chunk + 0.5, running=[True, False])
        assert (moved["proprio"][1] == obs["proprio"][1]).all() and not (
            moved["proprio"][0] == obs["proprio"][0]
        ).all()
        assert info["chunk_steps"][0] == 4 and not (terminated[1] or truncated[1])
    finally:
        env.close()


def test_periodic_evaluations_of_an_eleven_task_suite_build_each_env_once(monkeypatch):
    """A periodic evaluation visits every task of the suite in turn; the kept envs cover Meta-World's
    11-task suite, so a second evaluation builds no env (a pool smaller than the suite rebuilds them all)."""
    import vla_razor.envs as envs
    from vla_razor.envs import load_suite

    suite = load_suite("metaworld")
    policy = make_policy("flow", {**TINY, "world": "metaworld"}, embed_language=False)
    make = envs.make_vec_env
    built = []
    monkeypatch.setattr(envs, "make_vec_env", lambda task, **kw: built.append(task) or make(task, **kw))

    def periodic():
        for task in suite.tasks:
            evaluate_task(policy, task, 1, seed=0, max_episode_steps=8)

    close_evaluation_envs()
    try:
        periodic()
        periodic()
        assert sorted(built) == sorted(suite.tasks)
        monkeypatch.setattr(evaluation, "MAX_EVAL_SUB_ENVS", len(suite.tasks) - 1)
        close_evaluation_envs()
        built.clear()
        periodic()
        periodic()
        assert len(built) == 2 * len(suite.tasks)  # what a pool smaller than the suite costs
    finally:
        close_evaluation_envs()


def test_the_kept_envs_are_bounded_in_sub_envs_and_the_env_in_use_is_kept(monkeypatch):
    """The budget counts sub-envs (their memory), least recently used first out; an env larger than the
    whole budget still runs, alone."""
    policy = make_policy("flow", {**TINY, "world": "metaworld"}, embed_language=False)
    monkeypatch.setattr(evaluation, "MAX_EVAL_SUB_ENVS", 5)

    def kept():
        return [(key[0], key[1]) for key in evaluation._EVAL_ENVS]

    close_evaluation_envs()
    try:
        for task in ("reach-v3", "push-v3"):
            evaluate_task(policy, task, 2, seed=0, max_episode_steps=8)
        assert kept() == [("reach-v3", 2), ("push-v3", 2)]
        evaluate_task(policy, "reach-v3", 2, seed=0, max_episode_steps=8)  # used again: most recent
        evaluate_task(policy, "pick-place-v3", 2, seed=0, max_episode_steps=8)
        assert kept() == [("reach-v3", 2), ("pick-place-v3", 2)]
        evaluate_task(policy, "door-open-v3", 8, seed=0, max_episode_steps=8)
        assert kept() == [("door-open-v3", 8)]
    finally:
        close_evaluation_envs()
