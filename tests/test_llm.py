"""LLM-track tasks and tokenizer: deterministic generators with correct answers, a round-tripping tokenizer."""
import pytest

from vla_razor.llm.tasks import ALPHABET, NEW_TASK, PRIOR_TASKS, TASKS, Task, generate, get_task, is_correct
from vla_razor.llm.tokenizer import build_tokenizer


def _solve(prompt: str) -> str:
    """An independent solver: Python's own arithmetic on the parsed prompt."""
    body = prompt.rstrip("=")
    if body[0] == "C":
        return body[1:]
    if body[0] == "R":
        return body[1:][::-1]
    for op in "+-?":
        if op in body:
            a, b = (int(x) for x in body.split(op))
            return str(a + b) if op == "+" else str(a - b) if op == "-" else "<" if a < b else ">" if a > b else "="
    raise AssertionError(prompt)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_answer_is_right_and_generation_is_deterministic(name):
    task = get_task(name)
    problems = generate(name, 200, seed=3)
    assert problems == generate(name, 200, seed=3) and problems != generate(name, 200, seed=4)
    for p in problems:
        assert p.answer == _solve(p.prompt) and is_correct(p, p.answer + " ") and not is_correct(p, p.answer + "0")
        assert set(p.prompt + p.answer) <= set(ALPHABET)
    if task.operation in ("add", "sub", "cmp"):
        lengths = {len(x) for p in problems for x in p.prompt.rstrip("=").replace("?", "+").replace("-", "+").split("+")}
        assert lengths == set(range(task.min_digits, task.max_digits + 1))


def test_the_new_task_is_longer_than_anything_in_the_prior_suite():
    new = get_task(NEW_TASK)
    assert new.min_digits > max(get_task(t).max_digits for t in PRIOR_TASKS if get_task(t).operation == new.operation)
    with pytest.raises(ValueError, match="unknown operation"):
        Task("x", "mul", 1, 2)
    with pytest.raises(KeyError, match="known tasks"):
        get_task("add_9")


def test_tokenizer_is_one_token_per_character_and_round_trips(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    ids = tok("12+345=")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len("12+345=")
    assert tok.decode(ids, skip_special_tokens=True) == "12+345="
    batch = tok(["1+2=", "123+456="], padding=True)["input_ids"]
    assert batch[0][:4] == [tok.pad_token_id] * 4  # left padding, for generation
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("R9081=")["input_ids"] == tok("R9081=")["input_ids"] and len(again) == len(ALPHABET) + 3


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_tiny_model_builds_runs_and_round_trips_through_a_local_directory(architecture, tmp_path):
    import torch

    from vla_razor.llm.model import TinyLMConfig, build_model, load_policy

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_model(TinyLMConfig(architecture=architecture, hidden_size=32, num_layers=1, num_heads=2,
                                     intermediate_size=64), tok).eval()
    batch = tok(["12+3=", "C9="], padding=True, return_tensors="pt")
    logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_policy(tmp_path)
    assert torch.equal(loaded.eval()(**batch).logits, logits) and loaded_tok.padding_side == "left"
    with pytest.raises(FileNotFoundError, match="not a Hugging Face checkpoint"):
        load_policy(tmp_path / "missing")
    with pytest.raises(ValueError, match="divisible"):
        TinyLMConfig(hidden_size=30, num_heads=4)
