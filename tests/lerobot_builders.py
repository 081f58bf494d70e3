"""Local LeRobot pi0, pi0.5 and SmolVLA policies for the tests and the per-chunk benchmark, built offline.

Nothing here downloads: the tokenizer is a word-level one built from the task registry's instructions, the
SmolVLM backbone is a local folder holding its config, processor and that tokenizer, the weights are random.
``tiny_pi0_dims()`` shrinks LeRobot's two Gemma variants (and PaliGemma's vision tower) while it is active:
PI0Config names its sizes only by variant, so a tiny pi0 has to be built and loaded inside it. The real
families' code paths are otherwise untouched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STATE_DIM, ACTION_DIM = 25, 7
SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>", "\n"]
SMOLVLM_SPECIAL = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]


def local_tokenizer(directory: Path, extra_special: dict[str, str] | None = None) -> Path:
    """A word-level tokenizer over the registered tasks' instructions (and their paraphrases), saved where
    ``AutoTokenizer.from_pretrained`` loads it offline."""
    import re

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from vla_razor.envs.registry import TASKS

    texts = [text.lower() for spec in TASKS.values() for text in spec.instructions]
    words = {w for text in texts for w in re.findall(r"\w+|[^\w\s]", text)}
    # pi0.5's prompt: "Task: <instruction>, State: <state in 256 bins>;\nAction: "
    words = sorted(words | {"task", "state", "action", ",", ";", ":"} | {str(i) for i in range(256)})
    specials = SPECIAL + sorted((extra_special or {}).values())
    vocab = {token: i for i, token in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        extra_special_tokens=extra_special or {},
    )
    fast.save_pretrained(directory)
    return directory


@contextlib.contextmanager
def tiny_pi0_dims(width: int = 32, expert_width: int = 16):
    """While active, LeRobot's pi0 builds a tiny PaliGemma (``width``, 2 layers, a 1-layer vision tower with
    8 px patches) and a tiny action expert: the variants' names stay, their sizes shrink."""
    from lerobot.policies.pi0 import modeling_pi0
    from lerobot.policies.pi05 import modeling_pi05

    modules = (modeling_pi0, modeling_pi05)
    real = [(m.get_gemma_config, m.PaliGemmaForConditionalGenerationWithPiGemma) for m in modules]
    real_vlm = real[0][1]

    def config(variant: str):
        size = width if variant == "gemma_2b" else expert_width
        # 8 query heads, 1 key/value head: PI0's training forward hard-codes them
        return modeling_pi0.GemmaConfig(
            width=size, depth=2, mlp_dim=2 * size, num_heads=8, num_kv_heads=1, head_dim=4
        )

    def vlm(config):
        vision = config.vision_config
        vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers = 16, 32, 1
        vision.num_attention_heads, vision.patch_size = 2, 8
        vision.projection_dim = config.text_config.hidden_size
        return real_vlm(config=config)

    for m in modules:
        m.get_gemma_config, m.PaliGemmaForConditionalGenerationWithPiGemma = config, vlm
    try:
        yield
    finally:
        for m, (real_config, real_class) in zip(modules, real):
            m.get_gemma_config, m.PaliGemmaForConditionalGenerationWithPiGemma = real_config, real_class


def _features(image_size: int):
    from lerobot.configs.types import FeatureType, PolicyFeature

    features = {
        "observation.state": PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
        "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, image_size, image_size)),
    }
    return features, {"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))}


def _stats(image_size: int) -> dict:
    def span(low, high, n):
        return {
            "min": torch.full((n,), low),
            "max": torch.full((n,), high),
            "q01": torch.full((n,), low * 0.9),
            "q99": torch.full((n,), high * 0.9),
            "mean": torch.zeros(n),
            "std": torch.ones(n),
        }

    image = {
        k: torch.full((3, 1, 1), v) for k, v in (("min", 0.0), ("max", 1.0), ("mean", 0.5), ("std", 0.25))
    }
    return {
        "observation.state": span(-3.0, 3.0, STATE_DIM),
        "observation.images.front": image,
        "action": {
            **span(-1.0, 1.0, ACTION_DIM),
            "min": -torch.linspace(0.2, 1.0, 7),
            "max": torch.linspace(0.1, 1.0, 7),
        },
    }


def make_pi0(tokenizer: Path, seed: int = 0, image_size: int = 32, **overrides):
    """A pi0 on the canonical state and one camera with its processors,
    ``(policy, preprocessor, postprocessor)`` (tokenizer: a local folder). Tiny inside :func:`tiny_pi0_dims`,
    LeRobot's sizes outside."""
    return _make_paligemma("pi0", tokenizer, seed, image_size, overrides)


def make_pi05(tokenizer: Path, seed: int = 0, image_size: int = 32, **overrides):
    """A pi0.5 (the state discretised into the prompt, quantile normalisation) like :func:`make_pi0`."""
    return _make_paligemma("pi05", tokenizer, seed, image_size, {"tokenizer_max_length": 64, **overrides})


def _make_paligemma(kind: str, tokenizer: Path, seed: int, image_size: int, overrides: dict):
    import importlib

    from lerobot.policies.factory import get_policy_class, make_policy_config

    processor = importlib.import_module(f"lerobot.policies.{kind}.processor_{kind}")
    features, actions = _features(image_size)
    settings = dict(chunk_size=8, n_action_steps=8, num_inference_steps=4, tokenizer_max_length=16)
    settings.update(device="cpu", image_resolution=(image_size, image_size), **overrides)
    config = make_policy_config(kind, input_features=features, output_features=actions, **settings)
    torch.manual_seed(seed)
    policy = get_policy_class(kind)(config)
    with local_tokenizer_step(processor, tokenizer):
        pre, post = getattr(processor, f"make_{kind}_pre_post_processors")(config, _stats(image_size))
    return policy, pre, post


def tiny_flow_dirs(root: Path) -> dict[str, Path]:
    """Tiny pi0, pi0.5 and SmolVLA policy directories under ``root`` (call inside :func:`tiny_pi0_dims`)."""
    tokenizer = local_tokenizer(root / "tokenizer")
    return {
        "pi0": build_pi0(root / "pi0", tokenizer),
        "pi05": build_pi05(root / "pi05", tokenizer),
        "smolvla": build_smolvla(root / "smolvla", smolvlm_folder(root / "smolvlm")),
    }


def canonical_obs(n: int, seed: int = 0, image_size: int | None = None) -> dict:
    """Random canonical observations ``[n, ...]`` (with ``rgb`` when ``image_size`` is given)."""
    g = torch.Generator().manual_seed(seed)
    obs = {
        "proprio": torch.randn(n, STATE_DIM, generator=g),
        "state": torch.rand(n, 32, generator=g) * 2 - 1,
        "state_mask": torch.ones(n, 32),
        "task_id": torch.arange(n) % 3,
    }
    if image_size:
        obs["rgb"] = (torch.rand(n, image_size, image_size, 3, generator=g) * 255).to(torch.uint8)
    return obs


@contextlib.contextmanager
def local_tokenizer_step(module, tokenizer: Path):
    """While active, the tokenizer step ``module`` builds loads ``tokenizer`` (a local folder), not its hub
    name."""
    real = module.TokenizerProcessorStep
    module.TokenizerProcessorStep = lambda **kw: real(**{**kw, "tokenizer_name": str(tokenizer)})
    try:
        yield
    finally:
        module.TokenizerProcessorStep = real


def build_pi0(directory: Path, tokenizer: Path, **settings) -> Path:
    """:func:`make_pi0`'s policy saved in LeRobot's format (with its processors) to ``directory``."""
    return _save(*make_pi0(tokenizer, **settings), directory)


def build_pi05(directory: Path, tokenizer: Path, **settings) -> Path:
    return _save(*make_pi05(tokenizer, **settings), directory)


def build_smolvla(directory: Path, vlm: Path, **settings) -> Path:
    return _save(*make_smolvla(vlm, **settings), directory)


def _save(policy, pre, post, directory: Path) -> Path:
    policy.save_pretrained(directory)
    pre.save_pretrained(directory)
    post.save_pretrained(directory)
    return directory


def smolvlm_folder(
    directory: Path, text: dict | None = None, vision: dict | None = None, scale_factor: int = 2
) -> Path:
    """A local SmolVLM backbone folder for SmolVLA's ``vlm_model_name``: its config (tiny by default; pass the
    real dimensions to build SmolVLM2-500M's shape), image processor and a local tokenizer with SmolVLM's
    image tokens. SmolVLA builds the VLM from this config (``load_vlm_weights=False``)."""
    from transformers import (
        AutoTokenizer,
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    names = ("fake_image_token", "image_token", "global_image_token", "end_of_utterance_token")
    local_tokenizer(
        directory,
        dict(zip(names, ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"])),
    )
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    text_config = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    text_config.update(num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=len(tokenizer))
    text_config.update(text or {})
    vision_config = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    vision_config.update(image_size=32, patch_size=8)
    vision_config.update(vision or {})
    config = SmolVLMConfig(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    config.save_pretrained(directory)
    side = vision_config["image_size"]
    seq = (side // vision_config["patch_size"]) ** 2 // scale_factor**2
    images = SmolVLMImageProcessor(
        do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side}
    )
    processor = SmolVLMProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=seq,
    )
    processor.save_pretrained(directory)
    return directory


def make_smolvla(vlm: Path, seed: int = 0, image_size: int = 32, **overrides):
    """A SmolVLA on the canonical state and one camera over the local backbone ``vlm``, like
    :func:`make_pi0`."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    features, actions = _features(image_size)
    settings = dict(chunk_size=8, n_action_steps=8, num_steps=4, tokenizer_max_length=16, device="cpu")
    settings.update(
        vlm_model_name=str(vlm), load_vlm_weights=False, resize_imgs_with_padding=(image_size, image_size)
    )
    settings.update(overrides)
    config = SmolVLAConfig(input_features=features, output_features=actions, **settings)
    torch.manual_seed(seed)
    policy = SmolVLAPolicy(config)
    pre, post = make_smolvla_pre_post_processors(config, _stats(image_size))
    return policy, pre, post
