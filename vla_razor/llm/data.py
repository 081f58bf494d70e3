"""Batches and greedy evaluation for token policies on the arithmetic tasks.

A training sequence is ``<bos> prompt answer <eos>``; the loss (and every KL) covers the answer tokens
and the end of sequence, not the prompt. Evaluation decodes greedily and checks the answer exactly,
with Wilson 95% intervals, on problems from a seed range disjoint from training.
"""

from __future__ import annotations

import torch

from vla_razor.errors import NonFiniteError

from .tasks import Problem, generate, is_correct


def encode_batch(
    tokenizer,
    problems: list[Problem],
    responses: list[list[int]] | None = None,
    ended: list[bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``response_mask`` of ``<bos> prompt response [eos]``.

    ``responses`` are token ids (default: the correct answers); eos is appended where ``ended`` says the
    response ended with it (default: everywhere). The response mask covers the response and its eos."""
    if responses is None:
        responses = [tokenizer(p.answer, add_special_tokens=False)["input_ids"] for p in problems]
    ended = ended if ended is not None else [True] * len(problems)
    if not len(problems) == len(responses) == len(ended):
        raise ValueError(f"{len(problems)} problems, {len(responses)} responses and {len(ended)} end flags")
    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    answers = [list(r) + ([tokenizer.eos_token_id] if e else []) for r, e in zip(responses, ended)]
    length = max(len(p) + len(a) for p, a in zip(prompts, answers))
    ids = torch.full((len(problems), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        seq = p + a
        ids[i, length - len(seq) :] = torch.tensor(seq)
        attention[i, length - len(seq) :] = 1
        if a:
            response[i, length - len(a) :] = True
    device = batch_device(tokenizer)
    return {
        "input_ids": ids.to(device),
        "attention_mask": attention.to(device),
        "response_mask": response.to(device),
    }


def batch_device(tokenizer) -> torch.device:
    """Where batches go: the device a model put on the tokenizer (``tokenizer.vla_device``), else the CPU."""
    return torch.device(getattr(tokenizer, "vla_device", "cpu"))


def answer_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the response tokens (each predicted from the position before it)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    mask = batch["response_mask"][:, 1:]
    return torch.nn.functional.cross_entropy(logits[mask], targets[mask])


@torch.no_grad()
def sample_responses(
    model,
    tokenizer,
    problems: list[Problem],
    max_new_tokens: int = 8,
    sample: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_logits: bool = False,
):
    """Response token ids (eos excluded) and whether each ended with eos, decoding greedily or sampling
    at ``temperature``; incremental decoding with a KV cache (matches ``model.generate`` greedy).

    ``return_logits`` adds the model's logits at every decoding step ``[B, steps, V]`` (before the
    temperature), so a caller that needs the sampler's distributions skips a second forward pass."""
    device = batch_device(tokenizer)
    batch = tokenizer([p.prompt for p in problems], padding=True, return_tensors="pt").to(device)
    attention = batch["attention_mask"]
    step_ids, positions = batch["input_ids"], (attention.cumsum(-1) - 1).clamp(min=0)
    done = torch.zeros(len(problems), dtype=torch.bool, device=device)
    tokens, step_logits, past = [], [], None
    for _ in range(max_new_tokens):
        result = model(
            input_ids=step_ids,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=past,
            use_cache=True,
        )
        past = result.past_key_values
        logits = result.logits[:, -1].float()
        if not torch.isfinite(logits).all():
            raise NonFiniteError(
                f"the model's logits hold NaN or inf at decoding step {len(tokens) + 1}: its weights "
                "diverged (a learning rate too high?); resume from an earlier checkpoint"
            )
        if return_logits:
            step_logits.append(logits)
        if sample:
            probs = torch.softmax(logits / temperature, -1)
            # sample on the CPU generator's stream wherever the model runs: same seed, same responses
            token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)
        else:
            token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, tokenizer.pad_token_id), token)
        tokens.append(token)
        done |= token == tokenizer.eos_token_id
        if done.all():
            break
        attention = torch.cat([attention, attention.new_ones(len(problems), 1)], 1)
        step_ids, positions = token[:, None], positions[:, -1:] + 1
    rows = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in problems]
    responses, ended = [], []
    for row in rows:
        stop = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
        responses.append(row[:stop])
        ended.append(stop < len(row))
    if return_logits:
        return (
            responses,
            ended,
            torch.stack(step_logits, 1) if step_logits else torch.zeros(len(problems), 0, 0),
        )
    return responses, ended


def complete(
    model,
    tokenizer,
    problems: list[Problem],
    max_new_tokens: int = 8,
    sample: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Completions of the prompts as text, up to eos."""
    responses, _ = sample_responses(
        model, tokenizer, problems, max_new_tokens, sample, temperature, generator
    )
    return [tokenizer.decode(r, skip_special_tokens=True) for r in responses]


def evaluate_accuracy(model, tokenizer, task: str, problems: int, seed: int = 10_000, batch_size: int = 256):
    """Greedy exact-match accuracy on ``problems`` held-out problems of ``task`` (a SuccessRate with its
    Wilson interval)."""
    from vla_razor.evaluation import SuccessRate, wilson_interval

    was_training = model.training
    model.eval()
    try:
        items = generate(task, problems, seed=seed)
        correct = 0
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            longest = max(len(p.answer) for p in chunk)
            correct += sum(
                is_correct(p, c) for p, c in zip(chunk, complete(model, tokenizer, chunk, longest + 2))
            )
    finally:
        model.train(was_training)
    return SuccessRate(correct, problems, *wilson_interval(correct, problems))
