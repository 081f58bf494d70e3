"""How the razor analysis measures token policies (the LLM track's counterpart of ``RobotTrack``).

- ``kl/forward`` / ``kl/reverse``: the exact token KL summed over responses to a fixed set of new-task
  prompts (:func:`vla_razor.llm.kl.measure_token_kl`), responses sampled from the base / the policy;
- ``weights/*``: the same weight-change measures as the robot track;
- ``features/change``: 1 - linear CKA of the last layer's hidden state at the prompt's last token.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import torch
import yaml

from vla_razor.analysis.predictors import linear_cka, weight_change
from vla_razor.atomic import write_json

from .data import evaluate_accuracy
from .kl import measure_token_kl
from .model import load_policy
from .tasks import generate


class LLMTrack:
    def __init__(self, base_dir: str, run_root: Path, state_episodes: int, state_seed: int, kl_states: int):
        self.base_dir = Path(base_dir)
        self.new_task, self.prior_tasks = self._tasks(run_root)
        # state_episodes x 8 prompts (a robot "episode" gives several states; a prompt gives one response)
        self.problems = generate(self.new_task, min(kl_states, state_episodes * 8), seed=state_seed)
        self.max_new = max(len(p.answer) for p in self.problems) + 3
        self.seed = state_seed
        self.key = f"llm-{self.new_task}-{len(self.problems)}prompts-seed{state_seed}"

    # The base is loaded when a policy is measured: a report rebuilt from an archive whose predictors are all
    # cached needs no base on this machine.
    @cached_property
    def _base(self):
        base, tokenizer = load_policy(self.base_dir)
        return base.eval().requires_grad_(False), tokenizer

    @property
    def base(self):
        return self._base[0]

    @property
    def tokenizer(self):
        return self._base[1]

    @staticmethod
    def _tasks(run_root: Path) -> tuple[str, list[str]]:
        """The new task and prior tasks the sweep's runs used (from any run's resolved config)."""
        for config in sorted(Path(run_root).glob("*/config.yaml")):
            data = yaml.safe_load(config.read_text()) or {}
            if "task" in data and "prior_tasks" in data:
                return data["task"], [t for t in data["prior_tasks"] if t != data["task"]]
        from .finetune import LLMFinetuneConfig

        default = LLMFinetuneConfig()
        return default.task, default.prior_tasks

    @property
    def base_key(self) -> str | None:
        """What the base's accuracies depend on: its weights and the tasks; None when its weights are not on
        this machine (the stored accuracies are then the base's)."""
        from vla_razor.retention.evaluate import weights_hash

        if not (self.base_dir / "model.safetensors").is_file():
            return None
        return f"llm:{','.join([self.new_task, *self.prior_tasks])}-{weights_hash(self.base_dir)}"

    def base_rates(self, problems: int) -> dict[str, float]:
        """Greedy accuracy of the base on every task, cached beside its weights."""
        from vla_razor.retention.evaluate import weights_hash

        tasks = [self.new_task, *self.prior_tasks]
        cache = (
            self.base_dir
            / "razor_cache"
            / f"accuracy-{problems}p-{'-'.join(tasks)}-{weights_hash(self.base_dir)}.json"
        )
        if cache.is_file():
            return json.loads(cache.read_text())
        rates = {t: evaluate_accuracy(self.base, self.tokenizer, t, problems).rate for t in tasks}
        write_json(cache, rates)
        return rates

    @torch.no_grad()
    def _features(self, model) -> torch.Tensor:
        batch = self.tokenizer([p.prompt for p in self.problems], padding=True, return_tensors="pt")
        return (
            model(**batch, output_hidden_states=True).hidden_states[-1][:, -1].float()
        )  # left padding: the last prompt token

    def predictors(self, policy_dir: Path) -> dict[str, float]:
        policy, _ = load_policy(policy_dir)
        policy.eval()
        out = measure_token_kl(
            self.base,
            policy,
            self.tokenizer,
            self.problems,
            self.max_new,
            torch.Generator().manual_seed(self.seed),
        )
        out.update(weight_change(self.base, policy))
        out["features/change"] = 1.0 - linear_cka(self._features(self.base), self._features(policy))
        return out
