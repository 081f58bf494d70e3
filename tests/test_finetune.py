"""Fine-tuning: KL to the frozen base (exactness, penalties), GAE and group advantages, and PPO / GRPO /
SFT end to end on tiny budgets, including a SIGKILL mid-run and a resume, and the NaN guard."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import scipy.integrate
import scipy.stats
import torch

from vla_razor.base_kl import KLPenalty, KLPenaltyConfig, freeze, measure_kl_to_base
from vla_razor.divergence import GaussianChain, gaussian_js_estimate
from vla_razor.envs.observations import random_observation
from vla_razor.policies import make_policy
from vla_razor.rl.objective import group_advantages
from vla_razor.rl.rollout import gae

TINY = {"hidden": 32, "num_layers": 1, "num_heads": 4, "chunk_size": 4}


def _perturb(policy, scale=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _obs(n, seed=0):
    return random_observation(n, seed=seed)


def test_freeze_makes_an_untouchable_copy():
    policy = make_policy("flow", {**TINY, "num_steps": 2}, embed_language=False)
    base = freeze(policy)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    obs = _obs(8)
    loss = policy.bc_loss(obs, torch.randn(8, 4, 7))
    loss.backward()
    optimizer.step()
    assert not base.training and all(not p.requires_grad for p in base.parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(policy.parameters(), base.parameters()))


def test_kl_to_itself_is_zero_and_grows_after_a_change():
    policy = make_policy("flow", {**TINY, "num_steps": 3}, embed_language=False)
    base = freeze(policy)
    obs = _obs(16)
    same = measure_kl_to_base(base, policy, obs)
    assert same["kl/forward"] < 1e-9 and same["kl/reverse"] < 1e-9 and same["kl/states"] == 16
    _perturb(policy)
    moved = measure_kl_to_base(base, policy, obs)
    assert moved["kl/forward"] > 0 and moved["kl/reverse"] > 0 and moved["kl/forward_stderr"] > 0


def test_gaussian_policy_kl_matches_torch_distributions():
    """K = 1 with a state-independent std: the chain KL is the plain Gaussian KL, no sampling noise."""
    policy = make_policy("gaussian", {**TINY}, embed_language=False)
    base = freeze(policy)
    _perturb(policy)
    obs = _obs(12)
    measured = measure_kl_to_base(base, policy, obs)
    p, q = base.distribution(obs), policy.distribution(obs)
    normal = torch.distributions.Normal
    forward = torch.distributions.kl_divergence(normal(p.mean, p.std), normal(q.mean, q.std)).sum(-1)
    reverse = torch.distributions.kl_divergence(normal(q.mean, q.std), normal(p.mean, p.std)).sum(-1)
    assert measured["kl/forward"] == pytest.approx(forward.mean().item(), rel=1e-4)
    assert measured["kl/reverse"] == pytest.approx(reverse.mean().item(), rel=1e-4)
    assert measured["kl/forward_stderr"] == pytest.approx((forward.std() / math.sqrt(12)).item(), rel=1e-3)


def test_chain_rule_estimate_agrees_with_the_log_ratio_of_whole_chains():
    """The per-step exact KL on base-sampled chains and the Monte Carlo log-ratio of whole chains have the
    same expectation (the chain KL); checked on 3000 chains of one state to within 5 standard errors."""
    torch.manual_seed(0)
    policy = make_policy("flow", {**TINY, "num_steps": 3}, embed_language=False)
    base = freeze(policy)
    _perturb(policy, 0.03)
    obs = {k: v.repeat_interleave(3000, 0) for k, v in _obs(1).items()}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        _, chain = base.sample(obs, "stochastic", generator=g)
        per_step = (base.step_distributions(obs, chain), policy.step_distributions(obs, chain))
        from vla_razor.divergence import forward_kl

        chain_rule = forward_kl(*per_step)
        log_ratio = base.log_prob(obs, chain) - policy.log_prob(obs, chain)
    diff = (chain_rule - log_ratio).double()
    assert abs(diff.mean().item()) < 5 * diff.std().item() / math.sqrt(len(diff))
    assert chain_rule.std() < log_ratio.std()  # the exact per-step estimate has less noise


def test_js_estimate_matches_quadrature():
    p = GaussianChain(torch.tensor([[[0.0]]]), torch.tensor([[[0.0]]]))
    q = GaussianChain(torch.tensor([[[1.5]]]), torch.tensor([[[math.log(0.7)]]]))
    g = torch.Generator().manual_seed(0)
    many_p = GaussianChain(p.mean.expand(200_000, 1, 1), p.log_std.expand(200_000, 1, 1))
    many_q = GaussianChain(q.mean.expand(200_000, 1, 1), q.log_std.expand(200_000, 1, 1))
    estimate = gaussian_js_estimate(many_p, many_q, g)
    fp, fq = scipy.stats.norm(0, 1).pdf, scipy.stats.norm(1.5, 0.7).pdf

    def integrand(x):
        m = 0.5 * (fp(x) + fq(x))
        return 0.5 * (fp(x) * math.log(fp(x) / m) if fp(x) > 0 else 0) + 0.5 * (
            fq(x) * math.log(fq(x) / m) if fq(x) > 0 else 0
        )

    exact, _ = scipy.integrate.quad(integrand, -12, 12, limit=200)
    assert 0 < exact < math.log(2)
    assert estimate.mean().item() == pytest.approx(exact, abs=4 * estimate.std().item() / math.sqrt(200_000))


@pytest.mark.parametrize("direction", ["forward", "reverse", "js"])
def test_penalty_is_zero_at_the_base_and_pulls_back_after_a_change(direction):
    policy = make_policy("flow", {**TINY, "num_steps": 2}, embed_language=False)
    base = freeze(policy)
    obs = _obs(8)
    penalty = KLPenalty(KLPenaltyConfig(kind="fixed", coef=1.0, direction=direction))
    g = torch.Generator().manual_seed(0)
    _, chains = policy.sample(obs, "stochastic", generator=g)
    index = torch.arange(8)
    prepared = penalty.prepare(base, obs, chains, g)
    at_base, _ = penalty.loss(
        policy, obs, chains, prepared, index, generator=torch.Generator().manual_seed(1)
    )
    if direction != "js":
        assert at_base.item() == pytest.approx(0.0, abs=1e-6)
    _perturb(policy, 0.1)
    moved, raw = penalty.loss(
        policy, obs, chains, prepared, index, generator=torch.Generator().manual_seed(1)
    )
    moved.backward()
    assert moved.item() > at_base.item() + 1e-4 and raw.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_adaptive_coefficient_and_critical_weights():
    penalty = KLPenalty(KLPenaltyConfig(kind="adaptive", coef=0.1, target=1.0))
    penalty.update(2.0)
    assert penalty.coef == pytest.approx(0.2)
    penalty.update(0.5)
    assert penalty.coef == pytest.approx(0.1)
    penalty.update(1.0)
    assert penalty.coef == pytest.approx(0.1)
    policy = make_policy("flow", {**TINY, "num_steps": 2}, embed_language=False)
    critical = KLPenalty(KLPenaltyConfig(kind="fixed", critical_weighting=True, critical_samples=8))
    obs = _obs(16)
    _, chains = policy.sample(obs, "stochastic")
    base = freeze(policy)
    w = critical.prepare(base, obs, chains, torch.Generator().manual_seed(0))["weight"]
    # the spread u(s) of the base's actions at each state, from the same draws (the reverse penalty's prepare
    # draws nothing else): weight min(1, median(u) / u(s)), so the most uncertain state weighs least
    repeated = {k: v.repeat_interleave(8, 0) for k, v in obs.items()}
    actions, _ = base.sample(repeated, "stochastic", generator=torch.Generator().manual_seed(0))
    spread = actions.reshape(16, 8, -1).std(1).mean(-1)
    assert torch.allclose(w, (spread.median() / spread).clamp(max=1.0))
    assert w.argmin() == spread.argmax() and (w[spread <= spread.median()] == 1).all()
    assert w.shape == (16,) and (w > 0).all() and (w < 1).sum() >= 7  # the uncertain half down-weighted
    with pytest.raises(ValueError, match="direction"):
        KLPenaltyConfig(direction="sideways")


def test_gae_matches_discounted_returns_and_one_step_td():
    torch.manual_seed(0)
    T, N, gamma = 6, 3, 0.9
    rewards, values = torch.rand(T, N), torch.rand(T, N)
    dones = torch.zeros(T, N, dtype=torch.bool)
    dones[2, 1] = True
    next_value = torch.rand(N)
    adv, ret = gae(rewards, values, dones, next_value, gamma, lam=1.0)
    # lambda = 1: the return is the discounted sum up to the episode end (or the bootstrap)
    for n in range(N):
        for t in range(T):
            g, discount = 0.0, 1.0
            for u in range(t, T):
                g += discount * rewards[u, n].item()
                discount *= gamma
                if dones[u, n]:
                    discount = 0.0
                    break
            g += discount * next_value[n].item()
            assert ret[t, n].item() == pytest.approx(g, rel=1e-5)
    adv0, _ = gae(rewards, values, dones, next_value, gamma, lam=0.0)  # lambda = 0: the TD error
    following = torch.cat([values[1:], next_value[None]])
    td = rewards + gamma * following * (~dones).float() - values
    assert torch.allclose(adv0, td, atol=1e-6)


def test_group_advantages():
    scores = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv = group_advantages(scores)
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    assert torch.equal(adv[1], torch.zeros(4))  # a unanimous group teaches nothing


# -- end to end ----------------------------------------------------------------------------------
def _finetune_cmd(algo, root, base, *extra):
    return [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "finetune",
        "--algo",
        algo,
        "--smoke",
        f"runs_dir={root}",
        f"base={base}/base-smoke/policy",
        f"demo_dir={base}/demos" if algo == "sft" else "seed=0",
        *extra,
    ]


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_ppo_is_killed_mid_run_and_resumes(smoke_base, tmp_path):
    import hashlib

    base_hash = hashlib.sha256(
        (smoke_base / "base-smoke" / "policy" / "model.safetensors").read_bytes()
    ).hexdigest()
    cmd = _finetune_cmd("ppo", tmp_path, smoke_base, "total_env_steps=600", "name=ppo")
    run = tmp_path / "ppo"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.time() + 300
    while not list((run / "checkpoints").glob("step_*")):  # the first checkpoint, whichever it is
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "policy").exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming" in done.stdout
    records = [r for r in _records(run) if "kl/forward" in r]
    iterations = [r["step"] for r in records]
    assert iterations == list(range(1, len(iterations) + 1)) and records[-1]["env_steps"] >= 600
    for r in records:  # the signature metrics, every iteration
        assert (
            r["kl/forward"] >= 0
            and r["kl/reverse"] >= 0
            and r["kl/states"] > 0
            and math.isfinite(r["loss/value"])
        )
    assert (
        records[0]["ppo/policy_updated"] == 0.0 and records[-1]["ppo/policy_updated"] == 1.0
    )  # critic warm-up
    final = json.loads((run / "eval" / "final.json").read_text())
    assert set(final["tasks"]) == {"PickCube", "PushCube"}
    assert (run / "videos" / "final_PickCube.mp4").stat().st_size > 0 and (
        run / "critic" / "model.safetensors"
    ).exists()
    import hashlib

    from vla_razor.policies import ChainPolicy

    weights = smoke_base / "base-smoke" / "policy" / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == base_hash  # the base on disk is untouched too
    tuned = ChainPolicy.from_pretrained(run / "policy")
    base = ChainPolicy.from_pretrained(smoke_base / "base-smoke" / "policy")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), base.parameters()))


def test_grpo_and_sft_run_end_to_end(smoke_base, tmp_path):
    for algo in ("grpo", "sft"):
        # SFT also checks periodic_videos=false: periodic evaluations without videos, the final one with them
        extra = ("eval_every=1", "periodic_videos=false") if algo == "sft" else ()
        done = subprocess.run(
            _finetune_cmd(algo, tmp_path, smoke_base, *extra), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        run = tmp_path / f"{algo}-PickCube"
        records = [r for r in _records(run) if "kl/forward" in r]
        assert len(records) >= 1 and all(r["kl/forward"] > 0 for r in records)
        assert (run / "policy" / "model.safetensors").exists() and (run / "eval" / "final.json").exists()
        own_metric = "grpo/informative_groups" if algo == "grpo" else "loss/bc"  # each loop logged its own
        assert all(own_metric in r for r in records)
        if algo == "sft":
            assert (run / "eval" / "iter_000001.json").is_file() and (
                run / "snapshots" / "iter_000001"
            ).is_dir()
            videos = sorted(p.name for p in (run / "videos").glob("*.mp4"))
            assert videos and all(v.startswith("final_") for v in videos)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(smoke_base, tmp_path):
    cmd = _finetune_cmd("sft", tmp_path, smoke_base, "lr=1e30", "iterations=6", "name=nan")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    message = [line for line in done.stderr.splitlines() if line.startswith("vla-razor finetune:")]
    assert len(message) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "is nan" in message[0].lower() or "is inf" in message[0].lower()
    assert "at iteration" in message[0] and (
        "last good checkpoint" in message[0] or "No checkpoint was written yet" in message[0]
    )
    assert not (tmp_path / "nan" / "policy").exists()


@pytest.mark.slow
def test_a_diverging_llm_run_stops_with_exit_code_3_and_a_message(tmp_path, capsys):
    from vla_razor.cli import main

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    capsys.readouterr()
    for algo in ("sft",):  # once a traceback from the sampler (probability tensor contains inf or nan)
        code = main(
            [
                "llm",
                "finetune",
                "--algo",
                algo,
                "--smoke",
                f"runs_dir={tmp_path}",
                f"base={base}",
                "lr=1e30",
                "iterations=4",
                f"name=diverge-{algo}",
            ]
        )
        err = capsys.readouterr().err
        assert code == 3, err
        line = [x for x in err.splitlines() if x.startswith("vla-razor llm finetune:")]
        assert len(line) == 1 and ("nan" in line[0].lower() or "inf" in line[0].lower()), err
        # the harness's message, as on the robot track: where it stopped and what to resume from
        assert "iteration" in line[0] and "the run stopped" in line[0] and "checkpoint" in line[0], err
        assert not (tmp_path / f"diverge-{algo}" / "policy").exists()


@pytest.mark.slow
def test_missing_base_and_bad_config_get_clear_errors(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla_razor.cli",
            "finetune",
            "--algo",
            "ppo",
            f"runs_dir={tmp_path}",
            f"base={tmp_path}/nowhere",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        done.returncode != 0
        and "base policy" in (done.stdout + done.stderr)
        and "pretrain" in (done.stdout + done.stderr)
    )
    done = subprocess.run(
        [sys.executable, "-m", "vla_razor.cli", "finetune", "--algo", "grpo", "group_sise=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "group_size" in done.stderr


def test_sft_on_rl_data_refuses_a_policy_without_successes(smoke_base):
    from vla_razor.sft.bc import SFTConfig, rl_dataset

    cfg = SFTConfig(
        data="rl", rl_policy=str(smoke_base / "base-smoke" / "policy"), rl_episodes=2, suite="smoke"
    )
    with pytest.raises(ValueError, match="succeeded in none of 2 episodes"):
        rl_dataset(cfg, "PickCube", 8)
    with pytest.raises(ValueError, match="rl_policy"):
        SFTConfig(data="rl")


def test_clipped_surrogate_matches_the_ppo_formula():
    from vla_razor.rl.objective import clipped_surrogate

    log_ratio = torch.log(torch.tensor([[1.1, 1.5], [0.5, 0.95]]))
    adv = torch.tensor([2.0, -1.0])
    loss, stats = clipped_surrogate(log_ratio, adv, clip=0.2)
    # decision 0 (adv 2): min(1.1*2, 1.1*2) = 2.2 and min(1.5*2, 1.2*2) = 2.4; decision 1 (adv -1):
    # min(-0.5, -0.8) = -0.8 and min(-0.95, -0.95) = -0.95
    assert loss.item() == pytest.approx(-(2.2 + 2.4 - 0.8 - 0.95) / 4)
    assert stats["clipfrac"] == pytest.approx(0.5)
    r = torch.tensor([1.1, 1.5, 0.5, 0.95])
    assert stats["approx_kl"] == pytest.approx(((r - 1) - r.log()).mean().item(), rel=1e-5)
    # decoupled (stale rollouts): each term weighted by pi_prox / pi_behaviour; the clip is unchanged
    weights = torch.tensor([[0.5, 2.0], [1.0, 1.5]])
    weighted, _ = clipped_surrogate(log_ratio, adv, clip=0.2, behaviour_weight=weights)
    assert weighted.item() == pytest.approx(-(0.5 * 2.2 + 2.0 * 2.4 - 1.0 * 0.8 - 1.5 * 0.95) / 4)


def test_learning_rate_schedules_match_the_closed_form():
    import torch

    from vla_razor.sft.bc import SFTConfig
    from vla_razor.training.schedules import lr_scheduler

    def lrs(schedule, total, warmup=0, steps=None):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
        scheduler, out = lr_scheduler(optimizer, schedule, total, warmup), []
        for _ in range(steps or total + 1):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    cosine = lrs("cosine", 50)  # SFT: 10 iterations x 5 steps, cosine to zero
    assert cosine[0] == pytest.approx(1e-4) and cosine[25] == pytest.approx(0.5e-4)
    assert cosine[40] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 0.8)))
    assert cosine[50] == pytest.approx(0.0, abs=1e-12)
    assert set(lrs("constant", 50, steps=999)) == {1e-4}
    warm = lrs("cosine", 100, warmup=10)  # pretraining: linear warm-up from 0, then cosine
    assert [warm[s] for s in (0, 5, 10)] == pytest.approx([0.0, 0.5e-4, 1e-4])
    assert warm[55] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert SFTConfig().lr_schedule == "constant"
    with pytest.raises(ValueError, match="lr_schedule"):
        SFTConfig(lr_schedule="linear")
