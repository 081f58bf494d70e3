"""LeRobot's flow VLAs (pi0, SmolVLA) behind the chain interface, checked against LeRobot itself (marker
``lerobot``: these run in .venv-lerobot, where ``make test`` runs them).

On tiny local configurations (tests/lerobot_builders.py: random weights, a local tokenizer, a local SmolVLM
backbone folder): deterministic sampling is LeRobot's ``predict_action_chunk`` bit for bit; the Flow-SDE
chain at vanishing noise is LeRobot's sampler from the same initial noise; the recomputed chain
log-probability is the sampled one, with gradients; the KL of a policy with itself is 0, after a PPO update
positive and finite with the base unchanged; the fine-tuned policy saves in LeRobot's format and LeRobot loads
it back to the same actions; weights or a tokenizer that do not load are named errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from lerobot_builders import canonical_obs, tiny_flow_dirs, tiny_pi0_dims

pytestmark = pytest.mark.lerobot
FAMILIES = ["pi0", "pi05", "smolvla"]


@pytest.fixture(scope="module", autouse=True)
def tiny_dims():
    pytest.importorskip("lerobot")
    with tiny_pi0_dims():  # pi0's sizes come from its variant names: tiny while this module runs
        yield


@pytest.fixture(scope="module")
def policy_dirs(tmp_path_factory) -> dict[str, Path]:
    return tiny_flow_dirs(tmp_path_factory.mktemp("lerobot-flow"))


def _obs(n: int = 3, seed: int = 0) -> dict:
    return canonical_obs(n, seed, image_size=32)


def _lerobot_chunk(policy, obs: dict, seed: int, **kwargs) -> torch.Tensor:
    """LeRobot's own sampler on the policy's own input batch: normalised actions ``[B, horizon, A]``."""
    batch = policy._batch(obs)
    torch.manual_seed(seed)
    return policy.inner.predict_action_chunk(batch, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lerobot_flow_directory_loads_and_samples_as_lerobot_does_bit_for_bit(policy_dirs, family):
    from vla_razor.policies import ChainPolicy
    from vla_razor.policies.registry import lerobot_family, policy_class
    from vla_razor.policies.serialization import lerobot_type

    directory = policy_dirs[family]
    assert lerobot_type(directory) == family and lerobot_family(family) == f"lerobot_{family}"
    policy = ChainPolicy.from_pretrained(f"lerobot:{directory}")
    assert type(policy) is policy_class(f"lerobot_{family}") and policy.family == f"lerobot_{family}"
    cfg = policy.config
    assert (cfg.chunk_size, cfg.horizon, cfg.num_steps, cfg.chain_dim, cfg.action_dim) == (8, 8, 4, 32, 7)
    assert cfg.use_rgb and cfg.image_size == 32
    x = torch.rand(2, 8, 32) * 2 - 1  # the affine map is LeRobot's post-processor on the real dimensions
    assert torch.allclose(policy.denormalize_actions(x)[..., :7], policy.postprocessor(x[..., :7]), atol=1e-6)

    obs = _obs()
    expected = _lerobot_chunk(policy, obs, seed=7)
    torch.manual_seed(7)  # LeRobot's sampler draws its noise from the global stream
    assert torch.equal(policy.predict_action_chunk(obs), expected)
    torch.manual_seed(7)
    actions, chain = policy.sample(obs, "deterministic")
    assert not chain.stochastic and chain.points.shape == (3, 5, 8, 32) and actions.shape == (3, 8, 7)
    assert torch.allclose(actions, policy.postprocessor(expected), atol=1e-6)
    assert not torch.equal(_lerobot_chunk(policy, obs, seed=8), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_flow_sde_at_vanishing_noise_is_lerobots_sampler_and_the_chain_log_prob_is_exact(policy_dirs, family):
    import dataclasses

    from vla_razor.policies import ChainPolicy
    from vla_razor.policies.flow.modeling_flow import flow_sde_step

    policy = ChainPolicy.from_pretrained(policy_dirs[family])
    obs = _obs(4, seed=1)
    # a -> 0: every Flow-SDE step is LeRobot's Euler step, so the chain ends where LeRobot's sampler does from
    # the same initial noise
    quiet = dataclasses.replace(policy.config, noise_level=1e-7)
    policy.config = quiet
    _, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(3))
    noise = policy.normalize_actions(chain.points[:, 0])
    expected = _lerobot_chunk(policy, obs, seed=0, noise=noise.clone())
    assert torch.allclose(policy.normalize_actions(chain.points[:, -1])[..., :7], expected, atol=1e-4)
    policy.config = dataclasses.replace(quiet, noise_level=0.5)

    _, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(4))
    assert chain.stochastic and torch.isfinite(chain.points).all()
    sampled = chain.steps.log_prob(chain.points[:, 1:].flatten(2))
    # the chain's step Gaussians are the Flow-SDE ones around the model's velocity (computed again here step
    # by step from LeRobot's denoise_step, in normalised units, then mapped to action units)
    context = policy._prefix(policy._batch(obs))
    x = policy.normalize_actions(chain.points)
    reference = torch.zeros(4)
    for k in range(4):
        t = torch.full((4,), 1.0 - k / 4)
        v = policy._velocity(context, x[:, k], t)
        mean, std = flow_sde_step(x[:, k], v, t.view(-1, 1, 1), 0.25, 0.5)
        step = torch.distributions.Normal(policy.denormalize_actions(mean), std * policy.action_scale)
        reference += step.log_prob(chain.points[:, k + 1]).sum((1, 2))
    recomputed = policy.log_prob(obs, chain)
    assert torch.allclose(recomputed, sampled, rtol=1e-5, atol=1e-3)
    assert torch.allclose(recomputed, reference, rtol=1e-5, atol=1e-3)
    # under other weights the same chain has another likelihood, and gradients reach the model through it
    with torch.no_grad():
        for p in policy.inner.model.action_out_proj.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    moved = policy.log_prob(obs, chain)
    assert (moved - sampled).abs().max() > 1e-3
    moved.sum().backward()
    assert policy.inner.model.action_out_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_ppo_on_a_lerobot_flow_policy_tracks_kl_keeps_the_base_and_saves_for_lerobot(
    policy_dirs, family, tmp_path
):
    from safetensors.torch import load_file

    from vla_razor.algorithms import smoke_settings
    from vla_razor.base_kl import freeze, measure_kl_to_base
    from vla_razor.policies import ChainPolicy
    from vla_razor.rl.ppo import PPOConfig, train
    from vla_razor.rundir import RunDir

    directory = policy_dirs[family]
    policy = ChainPolicy.from_pretrained(directory)
    obs = _obs(8, seed=2)
    same = measure_kl_to_base(freeze(policy), policy, obs, 8, seed=0)
    assert abs(same["kl/forward"]) < 1e-6 and abs(same["kl/reverse"]) < 1e-6

    settings = {
        **smoke_settings("ppo"),
        "base": f"lerobot:{directory}",
        "runs_dir": str(tmp_path),
        "name": f"ppo-{family}",
    }
    settings.update(critic_warmup_iterations=0, lr=1e-3, total_env_steps=128, video_episodes=0)
    run = train(PPOConfig(**settings))
    rows = [r for r in RunDir(run).read_metrics() if "kl/forward" in r]
    assert rows and all(math.isfinite(r["kl/forward"]) for r in rows)
    assert rows[-1]["kl/forward"] > 0 and rows[-1]["ppo/policy_updated"] == 1.0
    base_weights = load_file(str(directory / "model.safetensors"))
    base = ChainPolicy.from_pretrained(directory).inner.state_dict()
    assert all(torch.equal(v, base[k]) for k, v in base_weights.items())  # the base directory is untouched

    saved = Path(run) / "policy"
    assert json.loads((saved / "config.json").read_text())["type"] == family
    tuned = ChainPolicy.from_pretrained(saved)
    reloaded = type(tuned)._policy_class().from_pretrained(str(saved))  # LeRobot's own loader
    assert any(
        not torch.equal(v, base_weights[k]) for k, v in reloaded.state_dict().items() if k in base_weights
    )
    batch = tuned._batch(obs)
    torch.manual_seed(5)
    lerobot_actions = reloaded.predict_action_chunk(batch)
    torch.manual_seed(5)
    actions, _ = tuned.sample(obs, "deterministic")
    assert torch.allclose(actions, tuned.postprocessor(lerobot_actions), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_bc_loss_is_the_policys_own_flow_matching_loss(policy_dirs, family):
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(policy_dirs[family])
    obs, actions = _obs(5, seed=4), torch.rand(5, 8, 7) * 0.2 - 0.1
    batch = policy._batch(obs, actions)
    batch["action_is_pad"] = torch.zeros(5, 8, dtype=torch.bool)
    torch.manual_seed(3)
    expected, _ = policy.inner.forward(batch)
    torch.manual_seed(3)
    assert torch.equal(policy.bc_loss(obs, actions), expected)
    losses = [policy.bc_loss(obs, actions, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])
    assert torch.isfinite(policy.bc_loss(obs, actions[:, :5])).all()  # a chunk cut by the episode's end
    with pytest.raises(ValueError, match=r"\[B, <= 8, 7\]"):
        policy.bc_loss(obs, torch.zeros(5, 9, 7))


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_or_a_tokenizer_that_do_not_load_are_named_errors(policy_dirs, family, tmp_path):
    from safetensors.torch import load_file, save_file

    from vla_razor.errors import CheckpointError, ConfigError
    from vla_razor.policies import ChainPolicy

    broken = tmp_path / "broken"
    shutil.copytree(policy_dirs[family], broken)
    weights = load_file(str(broken / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if k != sorted(weights)[-1]}, str(broken / "model.safetensors")
    )
    with pytest.raises(CheckpointError, match="does not hold this policy's weights"):
        ChainPolicy.from_pretrained(broken)  # LeRobot's pi0 loader would only print and go on

    moved = tmp_path / "moved"
    shutil.copytree(policy_dirs[family], moved)
    pre = moved / "policy_preprocessor.json"
    steps = json.loads(pre.read_text())
    tokenizer = next(s for s in steps["steps"] if "tokenizer_name" in s.get("config", {}))
    where = tokenizer["config"]["tokenizer_name"]
    tokenizer["config"]["tokenizer_name"] = str(tmp_path / "gone")
    pre.write_text(json.dumps(steps))
    with pytest.raises(CheckpointError, match="tokenizer does not load offline"):
        ChainPolicy.from_pretrained(moved)
    (moved / "vla_razor.json").write_text(json.dumps({"config": {"tokenizer": where, "noise_level": 0.3}}))
    policy = ChainPolicy.from_pretrained(moved)
    assert policy.config.noise_level == 0.3

    no_camera = {k: v for k, v in _obs(2).items() if k != "rgb"}
    with pytest.raises(ConfigError, match="obs_mode=rgb"):
        policy.sample(no_camera)


def test_the_per_chunk_benchmark_runs_and_reports_the_adapter_against_lerobot():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_lerobot_chunk.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["policy"] for r in records] == ["tiny-pi0", "tiny-smolvla"]
    for r in records:
        assert 0 < r["lerobot_predict_s"] < 10 and 0 < r["log_prob_backward_s"] < 10
        assert r["adapter_over_lerobot"] == round(r["adapter_deterministic_s"] / r["lerobot_predict_s"], 3)


@pytest.mark.parametrize("family", ["pi0", "smolvla"])
def test_flow_noise_learns_a_std_around_lerobots_euler_steps_and_saves_its_head(
    policy_dirs, family, tmp_path
):
    from safetensors.torch import load_file

    from vla_razor.algorithms import smoke_settings
    from vla_razor.policies import ChainPolicy
    from vla_razor.policies.lerobot.flow_chain import NOISE_HEAD
    from vla_razor.rl.ppo import PPOConfig, train

    directory = tmp_path / "noise"
    shutil.copytree(policy_dirs[family], directory)
    (directory / "vla_razor.json").write_text(json.dumps({"config": {"noise_method": "noise"}}))
    policy = ChainPolicy.from_pretrained(directory)
    assert policy.noise_head is not None and policy.config.noise_init_std == 0.2
    obs = _obs(3, seed=6)
    _, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(0))
    # every step: mean = LeRobot's Euler step from the chain's own point, std = the head's (0.2 to start with)
    context = policy._prefix(policy._batch(obs))
    x = policy.normalize_actions(chain.points)
    means = chain.steps.mean.view(3, 4, 8, 32)
    stds = chain.steps.log_std.exp().view(3, 4, 8, 32) / policy.action_scale
    for k in range(4):
        v = policy._velocity(context, x[:, k], torch.full((3,), 1.0 - k / 4))
        assert torch.allclose(means[:, k], policy.denormalize_actions(x[:, k] - v / 4), atol=1e-5)
        assert torch.allclose(stds[:, k], torch.full_like(stds[:, k], 0.2), rtol=1e-4)
    recomputed = policy.log_prob(obs, chain)
    assert torch.allclose(
        recomputed, chain.steps.log_prob(chain.points[:, 1:].flatten(2)), rtol=1e-5, atol=1e-3
    )
    recomputed.sum().backward()
    assert policy.noise_head.weight.grad.abs().sum() > 0  # the std is learned
    torch.manual_seed(1)
    expected = policy.inner.predict_action_chunk(policy._batch(obs))
    torch.manual_seed(1)
    assert torch.equal(policy.predict_action_chunk(obs), expected)  # evaluation stays LeRobot's sampler

    settings = {
        **smoke_settings("ppo"),
        "base": f"lerobot:{directory}",
        "runs_dir": str(tmp_path),
        "name": "ppo-noise",
    }
    settings.update(critic_warmup_iterations=0, lr=1e-3, total_env_steps=64, video_episodes=0, kl_states=4)
    saved = Path(train(PPOConfig(**settings))) / "policy"
    head = load_file(str(saved / NOISE_HEAD))
    assert not torch.equal(head["bias"], policy.noise_head.bias.detach())  # PPO moved the head
    tuned = ChainPolicy.from_pretrained(saved)
    assert tuned.config.noise_method == "noise" and torch.equal(tuned.noise_head.bias.detach(), head["bias"])
    type(tuned)._policy_class().from_pretrained(str(saved))  # still a LeRobot directory LeRobot loads


@pytest.mark.parametrize("family", ["pi0", "smolvla"])
def test_the_number_of_euler_steps_is_a_setting_lerobot_samples_and_saves_alike(
    policy_dirs, family, tmp_path
):
    from vla_razor.policies import ChainPolicy

    directory = tmp_path / "two"
    shutil.copytree(policy_dirs[family], directory)
    (directory / "vla_razor.json").write_text(json.dumps({"config": {"num_steps": 2}}))
    policy = ChainPolicy.from_pretrained(directory)
    assert policy.config.num_steps == 2
    obs = _obs(2, seed=3)
    expected = _lerobot_chunk(policy, obs, seed=6)
    torch.manual_seed(6)
    assert torch.equal(policy.predict_action_chunk(obs), expected)  # LeRobot's sampler at 2 steps
    _, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(0))
    assert chain.points.shape == (2, 3, 8, 32)
    saved = policy.save_pretrained(tmp_path / "saved")
    steps_key = "num_steps" if family == "smolvla" else "num_inference_steps"
    assert json.loads((saved / "config.json").read_text())[steps_key] == 2
    assert ChainPolicy.from_pretrained(saved).config.num_steps == 2
