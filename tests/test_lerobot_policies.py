"""LeRobot's policies behind vla-razor's chain interface, checked against LeRobot itself (marker ``lerobot``:
these run in .venv-lerobot, where ``make test`` runs them; the main environment skips them).

On a tiny local DiffusionPolicy (state-only, random weights, statistics of the canonical ranges):
deterministic sampling is LeRobot's ``predict_action_chunk`` bit for bit; each stochastic step is the
Gaussian diffusers' DDPM step draws from; the recomputed chain log-probability is the sampled one; the KL of
a policy with itself is 0 and after a PPO update positive and finite, with the base unchanged; a fine-tuned
policy saves in LeRobot's format and LeRobot loads it back to the same actions; weights that do not load are
an error."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.lerobot
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# a small U-Net, a short DDPM schedule, one observation step, no pretrained vision weights
TINY = dict(
    n_obs_steps=1, n_action_steps=8, drop_n_last_frames=0, down_dims=(16, 32), kernel_size=3, n_groups=4
)
TINY.update(diffusion_step_embed_dim=16, num_train_timesteps=20, num_inference_steps=5, device="cpu")
TINY.update(pretrained_backbone_weights=None)


def _tiny_diffusion(directory: Path, seed: int = 0, horizon: int = 8, **overrides) -> Path:
    """A small LeRobot DiffusionPolicy on the canonical state features, saved with its processors."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.diffusion.processor_diffusion import make_diffusion_pre_post_processors

    features = {
        "observation.state": PolicyFeature(FeatureType.STATE, (25,)),
        "observation.environment_state": PolicyFeature(FeatureType.ENV, (32,)),
    }
    actions = {"action": PolicyFeature(FeatureType.ACTION, (7,))}
    config = DiffusionConfig(
        input_features=features, output_features=actions, horizon=horizon, **{**TINY, **overrides}
    )
    torch.manual_seed(seed)
    policy = DiffusionPolicy(config)

    def span(low, high, n):
        return {
            "min": torch.full((n,), low),
            "max": torch.full((n,), high),
            "mean": torch.zeros(n),
            "std": torch.ones(n),
        }

    stats = {
        "observation.state": span(-3.0, 3.0, 25),
        "observation.environment_state": span(-1.0, 1.0, 32),
        "action": {
            **span(-1.0, 1.0, 7),
            "min": -torch.linspace(0.2, 1.0, 7),
            "max": torch.linspace(0.1, 1.0, 7),
        },
    }
    pre, post = make_diffusion_pre_post_processors(config, stats)
    policy.save_pretrained(directory)
    pre.save_pretrained(directory)
    post.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lerobot_dir(tmp_path_factory) -> Path:
    return _tiny_diffusion(tmp_path_factory.mktemp("lerobot") / "diffusion")


def _obs(n: int = 3, seed: int = 0) -> dict:
    from lerobot_builders import canonical_obs

    return canonical_obs(n, seed)


def _lerobot_chunk(policy, obs: dict, seed: int) -> torch.Tensor:
    """LeRobot's own sampler on the same observations: normalised actions ``[B, n_action_steps, A]``."""
    pre = policy.preprocessor
    raw = {"observation.state": obs["proprio"], "observation.environment_state": obs["state"]}
    batch = {k: v.unsqueeze(1) for k, v in pre(raw).items() if k in raw}
    torch.manual_seed(seed)
    return policy.inner.predict_action_chunk(batch)


def test_a_lerobot_directory_loads_as_a_chain_policy(lerobot_dir):
    from vla_razor.policies import ChainPolicy
    from vla_razor.policies.lerobot_diffusion.modeling_lerobot_diffusion import LeRobotDiffusionChain
    from vla_razor.policies.serialization import lerobot_type

    assert lerobot_type(lerobot_dir) == "diffusion" and lerobot_type(f"lerobot:{lerobot_dir}") == "diffusion"
    policy = ChainPolicy.from_pretrained(f"lerobot:{lerobot_dir}")
    assert isinstance(policy, LeRobotDiffusionChain)
    assert (policy.config.chunk_size, policy.config.horizon, policy.config.num_steps) == (8, 8, 5)
    # the action normaliser as an affine map: LeRobot's post-processor on a normalised chunk
    x = torch.rand(2, 8, 7) * 2 - 1
    assert torch.allclose(policy.denormalize_actions(x), policy.postprocessor(x), atol=1e-6)


def test_deterministic_sampling_is_lerobots_sampler_bit_for_bit(lerobot_dir):
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(lerobot_dir)
    obs = _obs()
    expected = _lerobot_chunk(policy, obs, seed=7)
    torch.manual_seed(7)  # the global stream, which LeRobot's sampler draws from
    assert torch.equal(policy.predict_action_chunk(obs), expected)
    torch.manual_seed(7)
    actions, chain = policy.sample(obs, "deterministic")
    assert not chain.stochastic and chain.points.shape == (3, 6, 8, 7)
    assert torch.allclose(
        actions, policy.postprocessor(expected), atol=1e-6
    )  # action units: LeRobot's own map
    torch.manual_seed(8)
    assert not torch.equal(policy.predict_action_chunk(obs), expected)  # DDPM's sampler is itself random


def test_each_stochastic_step_is_the_ddpm_gaussian_and_the_chain_log_prob_is_exact(lerobot_dir):
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(lerobot_dir)
    obs = _obs(4, seed=1)
    cond = policy._condition(obs)
    scheduler = policy.inner.diffusion.noise_scheduler
    x = torch.randn(4, 8, 7)
    for k in (0, 2, 4):
        index = torch.full((4,), k)
        out = policy._predict(x, index, cond)
        mean, std = policy._moments(out, x, index)
        g1, g2 = torch.Generator().manual_seed(k), torch.Generator().manual_seed(k)
        drawn = scheduler.step(out, scheduler.timesteps[k], x, generator=g1).prev_sample
        noise = torch.randn(x.shape, generator=g2) if int(scheduler.timesteps[k]) > 0 else torch.zeros_like(x)
        assert torch.allclose(drawn, mean + std * noise, atol=1e-5), k
    assert float(policy._std[-1]) == 0.0  # the last DDPM step adds no noise: the chain floors it at min_std

    actions, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(3))
    assert actions.shape == (4, 8, 7) and chain.points.shape == (4, 6, 8, 7) and chain.stochastic
    sampled = chain.steps.log_prob(chain.points[:, 1:].flatten(2))
    recomputed = policy.log_prob(obs, chain)
    assert torch.allclose(sampled, recomputed, rtol=1e-5, atol=1e-3)
    assert torch.isfinite(recomputed).all()
    # gradients reach the U-Net through the recomputed log-probability
    recomputed.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.inner.parameters())


def test_ppo_on_a_lerobot_policy_tracks_kl_keeps_the_base_and_saves_for_lerobot(lerobot_dir, tmp_path):
    from safetensors.torch import load_file

    from vla_razor.algorithms import smoke_settings
    from vla_razor.base_kl import freeze, measure_kl_to_base
    from vla_razor.policies import ChainPolicy
    from vla_razor.rl.ppo import PPOConfig, train
    from vla_razor.rundir import RunDir

    policy = ChainPolicy.from_pretrained(lerobot_dir)
    obs = _obs(16, seed=2)
    same = measure_kl_to_base(freeze(policy), policy, obs, 16, seed=0)
    # 0 up to float rounding: the sampler's step Gaussians come from B-row U-Net passes, the other policy's
    # from one batched pass over all K steps
    assert abs(same["kl/forward"]) < 1e-8 and abs(same["kl/reverse"]) < 1e-8

    settings = {
        **smoke_settings("ppo"),
        "base": f"lerobot:{lerobot_dir}",
        "runs_dir": str(tmp_path),
        "name": "ppo-lerobot",
    }
    settings.update(critic_warmup_iterations=0, lr=1e-3, total_env_steps=128, video_episodes=0)
    run = train(PPOConfig(**settings))
    rows = [r for r in RunDir(run).read_metrics() if "kl/forward" in r]
    assert rows and all(math.isfinite(r["kl/forward"]) for r in rows)
    assert rows[-1]["kl/forward"] > 0 and rows[-1]["ppo/policy_updated"] == 1.0
    # the base directory is untouched, and the fine-tuned policy is a LeRobot policy directory
    base_weights = load_file(str(lerobot_dir / "model.safetensors"))
    assert all(
        torch.equal(v, ChainPolicy.from_pretrained(lerobot_dir).inner.state_dict()[k])
        for k, v in base_weights.items()
    )
    saved = Path(run) / "policy"
    assert json.loads((saved / "config.json").read_text())["type"] == "diffusion"
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    reloaded = DiffusionPolicy.from_pretrained(str(saved))
    tuned = ChainPolicy.from_pretrained(saved)
    assert any(not torch.equal(v, base_weights[k]) for k, v in reloaded.state_dict().items())
    expected = _lerobot_chunk(tuned, obs, seed=5)  # through LeRobot's own policy object...
    torch.manual_seed(5)
    lerobot_actions = reloaded.predict_action_chunk(
        {
            k: v.unsqueeze(1)
            for k, v in tuned.preprocessor(
                {"observation.state": obs["proprio"], "observation.environment_state": obs["state"]}
            ).items()
            if k.startswith("observation")
        }
    )
    assert torch.equal(lerobot_actions, expected)  # ...and LeRobot's reload of the saved directory agree
    torch.manual_seed(5)
    actions, _ = tuned.sample(obs, "deterministic")
    assert torch.allclose(actions, tuned.postprocessor(expected), atol=1e-6)


def test_a_directory_whose_weights_do_not_load_is_an_error_not_random_weights(lerobot_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from vla_razor.errors import CheckpointError
    from vla_razor.policies import ChainPolicy

    broken = tmp_path / "broken"
    shutil.copytree(lerobot_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="does not hold this policy's weights"):
        ChainPolicy.from_pretrained(broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="does not load"):
        ChainPolicy.from_pretrained(broken)


def test_a_policy_saved_without_its_processors_is_refused_in_one_line(lerobot_dir, tmp_path):
    """``DiffusionPolicy(cfg).save_pretrained(dir)`` alone (config.json and weights, no processors) as a base:
    exit 2 with one line naming the missing file and the fix, not LeRobot's migration traceback."""
    import shutil
    import subprocess
    import sys

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(lerobot_dir / name, bare / name)
    cmd = [sys.executable, "-m", "vla_razor.cli", "finetune", "--algo", "ppo", "--smoke"]
    cmd += [f"base=lerobot:{bare}", f"runs_dir={tmp_path / 'runs'}", "noise_level=0.0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "policy_preprocessor.json" in done.stderr
    assert "pre.save_pretrained(dir)" in done.stderr


def test_bc_loss_is_lerobots_own_loss_and_a_longer_horizon_executes_n_action_steps(lerobot_dir, tmp_path):
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(lerobot_dir)
    obs, actions = _obs(6, seed=4), torch.rand(6, 8, 7) * 0.2 - 0.1
    raw = {
        "observation.state": obs["proprio"],
        "observation.environment_state": obs["state"],
        "action": actions,
    }
    batch = {
        k: v.unsqueeze(1) if k != "action" else v for k, v in policy.preprocessor(raw).items() if k in raw
    }
    batch["action_is_pad"] = torch.zeros(6, 8, dtype=torch.bool)
    torch.manual_seed(3)
    expected = policy.inner.diffusion.compute_loss(batch)
    torch.manual_seed(3)
    assert torch.equal(policy.bc_loss(obs, actions), expected)
    # with a generator the loss is a function of it (the global stream is restored afterwards)
    losses = [policy.bc_loss(obs, actions, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])

    # horizon 16, n_action_steps 8: the chain denoises 16 actions, the env executes the first 8
    longer = ChainPolicy.from_pretrained(_tiny_diffusion(tmp_path / "h16", horizon=16))
    executed, chain = longer.sample(obs, "stochastic", generator=torch.Generator().manual_seed(0))
    assert executed.shape == (6, 8, 7) and chain.points.shape == (6, 6, 16, 7)
    assert torch.equal(executed, chain.points[:, -1, :8])
    assert torch.isfinite(longer.bc_loss(obs, actions)).all()  # 8 demonstrated actions, 8 padded
    with pytest.raises(ValueError, match=r"\[B, <= 16, 7\]"):
        longer.bc_loss(obs, torch.zeros(6, 17, 7))


def test_representation_change_reads_the_unets_observation_conditioned_features(lerobot_dir):
    from vla_razor.analysis.predictors import feature_change
    from vla_razor.base_kl import freeze
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(lerobot_dir)
    obs = _obs(12, seed=6)
    features = policy.encode(obs)
    assert features.shape[0] == 12 and features.dim() == 2 and features.std(0).max() > 0  # varies with obs
    base = freeze(policy)
    assert abs(feature_change(base, policy, obs)) < 1e-9
    with torch.no_grad():
        for p in policy.inner.diffusion.unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert feature_change(base, policy, obs) > 1e-4


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_a_ddim_policy_samples_as_lerobot_and_each_stochastic_step_is_ddims_gaussian(tmp_path, prediction):
    import dataclasses

    from vla_razor.policies import ChainPolicy

    directory = _tiny_diffusion(tmp_path / "ddim", noise_scheduler_type="DDIM", prediction_type=prediction)
    policy = ChainPolicy.from_pretrained(directory)
    assert policy.scheduler_kind == "ddim" and policy.config.ddim_eta == 1.0
    obs = _obs(3, seed=5)
    expected = _lerobot_chunk(policy, obs, seed=2)
    torch.manual_seed(2)
    assert torch.equal(
        policy.predict_action_chunk(obs), expected
    )  # LeRobot's deterministic DDIM, bit for bit

    cond = policy._condition(obs)
    scheduler = policy.inner.diffusion.noise_scheduler
    x = torch.randn(3, 8, 7)
    for k in range(5):
        index = torch.full((3,), k)
        out = policy._predict(x, index, cond)
        mean, std = policy._moments(out, x, index)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(k))
        t = scheduler.timesteps[k]
        drawn = scheduler.step(out, t, x, eta=1.0, variance_noise=noise).prev_sample
        assert torch.allclose(drawn, mean + std * noise, atol=1e-5), k
        if k < 4:  # eta changes the mean's direction term too (not at the last step, which has no variance)
            assert not torch.allclose(scheduler.step(out, t, x, eta=0.0).prev_sample, mean, atol=1e-4)
    assert (policy._std[:-1] > 0).all()

    actions, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(1))
    assert torch.allclose(
        chain.steps.log_prob(chain.points[:, 1:].flatten(2)),
        policy.log_prob(obs, chain),
        rtol=1e-5,
        atol=1e-3,
    )
    # the setting survives saving, and eta 0 makes the stochastic chain's means LeRobot's deterministic steps
    policy.config = dataclasses.replace(policy.config, ddim_eta=0.0)
    policy.save_pretrained(tmp_path / "saved")
    quiet = ChainPolicy.from_pretrained(tmp_path / "saved")
    assert quiet.config.ddim_eta == 0.0
    out = quiet._predict(x, torch.zeros(3, dtype=torch.long), cond)
    mean, _ = quiet._moments(out, x, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(
        mean, scheduler.step(out, scheduler.timesteps[0], x, eta=0.0).prev_sample, atol=1e-5
    )


def test_fewer_denoising_steps_are_a_setting_lerobot_samples_and_saves_alike(lerobot_dir, tmp_path):
    import shutil

    from vla_razor.policies import ChainPolicy

    directory = tmp_path / "three"
    shutil.copytree(lerobot_dir, directory)
    (directory / "vla_razor.json").write_text(json.dumps({"config": {"num_steps": 3}}))
    policy = ChainPolicy.from_pretrained(directory)
    assert policy.config.num_steps == 3 and len(policy._t) == 3
    obs = _obs(2, seed=9)
    expected = _lerobot_chunk(policy, obs, seed=4)
    torch.manual_seed(4)
    assert torch.equal(policy.predict_action_chunk(obs), expected)  # LeRobot's sampler at 3 steps
    _, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(0))
    assert chain.points.shape == (2, 4, 8, 7)
    assert torch.allclose(
        policy.log_prob(obs, chain), chain.steps.log_prob(chain.points[:, 1:].flatten(2)), atol=1e-3
    )
    saved = policy.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "config.json").read_text())["num_inference_steps"] == 3
    assert ChainPolicy.from_pretrained(saved).config.num_steps == 3
