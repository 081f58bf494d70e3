"""Batches and greedy evaluation for token policies on the arithmetic tasks.

A training sequence is ``<bos> prompt answer <eos>``; the loss (and every KL) covers the answer tokens
and the end of sequence, not the prompt. Evaluation decodes greedily and checks the answer exactly,
with Wilson 95% intervals, on problems from a seed range disjoint from training.
"""
from __future__ import annotations

import torch

from .tasks import Problem, generate, is_correct


def encode_batch(tokenizer, problems: list[Problem], completions: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``response_mask`` (the answer + eos positions)
    of ``prompt + completion + eos``; completions default to the correct answers."""
    completions = completions if completions is not None else [p.answer for p in problems]
    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    answers = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions]
    length = max(len(p) + len(a) for p, a in zip(prompts, answers))
    ids = torch.full((len(problems), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        seq = p + a
        ids[i, length - len(seq):] = torch.tensor(seq)
        attention[i, length - len(seq):] = 1
        response[i, length - len(a):] = True
    return {"input_ids": ids, "attention_mask": attention, "response_mask": response}


def answer_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the response tokens (each predicted from the position before it)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    mask = batch["response_mask"][:, 1:]
    return torch.nn.functional.cross_entropy(logits[mask], targets[mask])


@torch.no_grad()
def complete(model, tokenizer, problems: list[Problem], max_new_tokens: int = 8, sample: bool = False,
             temperature: float = 1.0, generator: torch.Generator | None = None) -> list[str]:
    """Completions of the prompts up to eos (greedy, or sampled at ``temperature``)."""
    batch = tokenizer([p.prompt for p in problems], padding=True, return_tensors="pt")
    ids, attention = batch["input_ids"], batch["attention_mask"]
    done = torch.zeros(len(problems), dtype=torch.bool)
    out = []
    past = None
    position = attention.cumsum(-1) - 1
    step_ids, step_positions = ids, position.clamp(min=0)
    for _ in range(max_new_tokens):
        result = model(input_ids=step_ids, attention_mask=attention, position_ids=step_positions,
                       past_key_values=past, use_cache=True)
        past = result.past_key_values
        logits = result.logits[:, -1].float()
        if sample:
            probs = torch.softmax(logits / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, tokenizer.pad_token_id), token)
        out.append(token)
        done |= token == tokenizer.eos_token_id
        if done.all():
            break
        attention = torch.cat([attention, attention.new_ones(len(problems), 1)], 1)
        step_ids = token[:, None]
        step_positions = step_positions[:, -1:] + 1
    tokens = torch.stack(out, 1) if out else torch.zeros(len(problems), 0, dtype=torch.long)
    texts = []
    for row in tokens.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode([t for t in row if t != tokenizer.pad_token_id], skip_special_tokens=True))
    return texts


def evaluate_accuracy(model, tokenizer, task: str, problems: int, seed: int = 10_000, batch_size: int = 256):
    """Greedy exact-match accuracy on ``problems`` held-out problems of ``task`` (a SuccessRate with its Wilson interval)."""
    from vla_razor.evaluation import SuccessRate, wilson_interval

    was_training = model.training
    model.eval()
    try:
        items = generate(task, problems, seed=seed)
        correct = 0
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            longest = max(len(p.answer) for p in chunk)
            correct += sum(is_correct(p, c) for p, c in zip(chunk, complete(model, tokenizer, chunk, longest + 2)))
    finally:
        model.train(was_training)
    return SuccessRate(correct, problems, *wilson_interval(correct, problems))
