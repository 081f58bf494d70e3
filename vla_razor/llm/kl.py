"""KL to the base for token policies, through the divergence core's exact categorical KL.

Per sequence, the KL of the response is the sum over response tokens of the exact per-token
categorical KL at that prefix (the chain rule for autoregressive models); its expectation over
sequences uses sequences sampled from the distribution in the KL's first argument:

- ``kl/forward`` = E_{y ~ pi_0}[sum_t KL(pi_0(.|x, y_<t) || pi(.|x, y_<t))], responses sampled from the BASE;
- ``kl/reverse`` = E_{y ~ pi}[sum_t KL(pi(.|x, y_<t) || pi_0(.|x, y_<t))], responses sampled from the policy.
"""

from __future__ import annotations

import torch

from vla_razor.divergence import categorical_kl, mean_and_stderr

from .data import encode_batch, sample_responses


def response_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits that predict each token ``[B, T-1, V]`` (position t predicts token t + 1)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()


def sequence_kl(p_model, q_model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-sequence sum over response tokens of the exact KL(p || q) ``[B]``."""
    mask = batch["response_mask"][:, 1:]
    per_token = categorical_kl(response_logits(p_model, batch), response_logits(q_model, batch), mask)
    return per_token.sum(-1)


def sampled_sequence_kl(
    step_logits: torch.Tensor,
    responses: list[list[int]],
    ended: list[bool],
    q_model,
    tokenizer,
    problems: list,
) -> torch.Tensor:
    """Per-sequence exact KL(p || q) summed over the response, where p's logits are the sampler's own
    decoding-step logits (``sample_responses(..., return_logits=True)``): only q needs a forward pass."""
    batch = encode_batch(tokenizer, problems, responses, ended)
    mask = batch["response_mask"][:, 1:]
    q_logits = response_logits(q_model, batch)[mask]  # response tokens, sequence by sequence, in order
    lengths = torch.tensor([len(r) + e for r, e in zip(responses, ended)], device=step_logits.device)
    steps = torch.arange(step_logits.shape[1], device=step_logits.device)[None] < lengths[:, None]
    # two forward paths (cached decoding, full sequence) round differently: where p == q that is -1e-8, not 0
    per_token = categorical_kl(step_logits[steps], q_logits).clamp_min(0.0)
    owner = steps.nonzero()[:, 0]
    return torch.zeros(len(responses), device=per_token.device).index_add_(0, owner, per_token)


@torch.no_grad()
def measure_token_kl(
    base, policy, tokenizer, problems: list, max_new_tokens: int, generator: torch.Generator
) -> dict[str, float]:
    """``kl/forward`` and ``kl/reverse`` (with standard errors) on responses to ``problems``.

    The sampler's decoding logits are reused as the KL's first argument, so each direction costs one
    sampling pass and one forward pass of the other model."""
    was_training = policy.training
    policy.eval()
    try:
        out = {}
        for name, sampler, other in (("forward", base, policy), ("reverse", policy, base)):
            responses, ended, logits = sample_responses(
                sampler,
                tokenizer,
                problems,
                max_new_tokens,
                sample=True,
                generator=generator,
                return_logits=True,
            )
            values = sampled_sequence_kl(logits, responses, ended, other, tokenizer, problems)
            est = mean_and_stderr(values)
            out[f"kl/{name}"], out[f"kl/{name}_stderr"] = est.mean, est.stderr
        out["kl/sequences"] = len(problems)
    finally:
        policy.train(was_training)
    return out
