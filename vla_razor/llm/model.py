"""Token policies for the LLM track: a tiny transformers causal LM built from a config, or any local
checkpoint.

The tiny model is a Llama (or Qwen2) architecture of a few million parameters, trained from scratch on
the prior arithmetic suite; nothing is downloaded. ``load_policy(path)`` takes any local Hugging Face
checkpoint directory instead, with its own tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vla_razor.errors import CheckpointError, refuse_pickles

from ..config import PositiveInt


@dataclass
class TinyLMConfig:
    architecture: str = "llama"
    """llama or qwen2 (transformers' LlamaForCausalLM / Qwen2ForCausalLM)."""
    hidden_size: PositiveInt = 128
    """Width of the residual stream."""
    num_layers: PositiveInt = 4
    """Transformer blocks."""
    num_heads: PositiveInt = 4
    """Attention heads (key/value heads too)."""
    intermediate_size: PositiveInt = 512
    """MLP width."""
    max_length: PositiveInt = 64
    """Longest sequence (prompt + answer) in tokens."""

    def __post_init__(self):
        if self.architecture not in ("llama", "qwen2"):
            raise ValueError(f"architecture must be llama or qwen2, got {self.architecture!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")


def build_model(cfg: TinyLMConfig, tokenizer):
    """A freshly initialised causal LM sized by ``cfg`` over ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_class, model_class = (
        (LlamaConfig, LlamaForCausalLM) if cfg.architecture == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    )
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return model_class(config)


def place(model, tokenizer, device: str):
    """Move ``model`` to ``device`` and mark the tokenizer so batches follow it (``cpu``, ``cuda``,
    ``auto``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    tokenizer.vla_device = device
    return model


def load_policy(path: str | Path):
    """``(model, tokenizer)`` from a local checkpoint directory (``save_pretrained`` output); never
    downloads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # a bar per load of a few-MB model is noise in sweeps

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} is not a Hugging Face checkpoint directory (no config.json): "
            "pass the directory `vla-razor llm pretrain` wrote, or any local model directory"
        )
    refuse_pickles(path, "model")
    try:
        meta = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path / 'config.json'} is not JSON ({err}): the model is corrupt; re-save it"
        ) from None
    if isinstance(meta, dict) and "family" in meta and "model_type" not in meta:
        raise CheckpointError(
            f"{path} is a vla-razor {meta['family']} robot policy, not a language model: the robot "
            "track's commands (vla-razor finetune, eval) take it; `vla-razor llm ...` needs a model "
            "that `vla-razor llm pretrain` wrote"
        )
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(
            f"{path} has no *.safetensors weights: save the model with save_pretrained "
            "(safe_serialization is the default)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # use_safetensors: never fall back to a pickled pytorch_model.bin
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as err:  # transformers' wording for a missing or unreadable file
        raise CheckpointError(
            f"{path} cannot be loaded as a language model ({type(err).__name__}: "
            f"{str(err).strip()[:300]}); re-save it with save_pretrained"
        ) from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {name} holds NaN or inf values; the model diverged or is corrupt")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer
