"""Arithmetic tasks with verifiable answers, small enough for a CPU-trained language model.

As in "Ignore the KL Penalty!" (a small model, arithmetic, exploration near the pretrained policy):
every problem is a prompt such as ``"37+485="`` whose completion is checked exactly (``"522"``).
Operations: addition, subtraction (non-negative results), comparison (``<``, ``=`` or ``>``), copy and
reverse of a digit string. A task is an operation with a range of operand lengths; the prior suite is
what the base model learns in pretraining and the new task is what fine-tuning teaches (by default,
additions longer than any the base saw).

Generators are seeded and deterministic: ``generate(task, n, seed)`` returns the same problems on every
machine (Python's ``random.Random`` with a seed derived from the task name and ``seed``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

ALPHABET = tuple("0123456789+-?<>=CR")
"""Every character a prompt or an answer can contain."""
OPERATIONS = ("add", "sub", "cmp", "copy", "rev")


@dataclass(frozen=True)
class Task:
    name: str
    operation: str
    min_digits: int
    max_digits: int
    pad_to: int = 0
    """Zero-pad the reference answer to this many digits (0: none). Any digit string with the answer's
    value is then correct (``017798`` and ``17798``), so the reference SFT clones is one correct form
    among several: RL can keep the base's own form, SFT must learn the reference's."""

    def __post_init__(self):
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}: choose one of {', '.join(OPERATIONS)}")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self.min_digits}..{self.max_digits}")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    numeric: bool = False
    """Any digit string with the answer's value is correct, not only ``answer`` itself."""


TASKS = {
    t.name: t
    for t in (
        Task("add_1_3", "add", 1, 3),
        Task("sub_1_3", "sub", 1, 3),
        Task("cmp_1_4", "cmp", 1, 4),
        Task("copy_1_6", "copy", 1, 6),
        Task("rev_1_6", "rev", 1, 6),
        Task("add_4_5", "add", 4, 5),
        Task("add_4_4", "add", 4, 4),
        Task("add_4_4_zeropad", "add", 4, 4, pad_to=6),
    )
}
PRIOR_TASKS = ("add_1_3", "sub_1_3", "cmp_1_4", "copy_1_6", "rev_1_6")
NEW_TASK = "add_4_4"
EXPOSURE_TASK = "add_4_5"
"""Pretraining mixes a few of these in (4 and 5 digit additions), so the base knows a little of the new
task's family: it answers 4+4 digit additions 36% of the time when sampling, 83% within 16 samples,
and 5+5 almost never (docs/notebook.md). RL can sharpen what the base half knows, hence add_4_4."""


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown LLM task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def make_problem(task: Task, rng: random.Random) -> Problem:
    a = _number(rng, rng.randint(task.min_digits, task.max_digits))
    b = _number(rng, rng.randint(task.min_digits, task.max_digits))
    if task.operation == "add":
        answer = str(a + b)
        return Problem(f"{a}+{b}=", answer.zfill(task.pad_to), numeric=bool(task.pad_to))
    if task.operation == "sub":
        a, b = max(a, b), min(a, b)
        return Problem(f"{a}-{b}=", str(a - b))
    if task.operation == "cmp":
        return Problem(f"{a}?{b}=", "<" if a < b else ">" if a > b else "=")
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(task.min_digits, task.max_digits)))
    if task.operation == "copy":
        return Problem(f"C{digits}=", digits)
    return Problem(f"R{digits}=", digits[::-1])


def generate(task: str | Task, n: int, seed: int = 0) -> list[Problem]:
    """``n`` problems of ``task``, a pure function of (task name, n, seed)."""
    task = get_task(task) if isinstance(task, str) else task
    digest = hashlib.sha256(f"{task.name}:{seed}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "little"))
    return [make_problem(task, rng) for _ in range(n)]


def is_correct(problem: Problem, completion: str) -> bool:
    """Exact match of the completion (up to the end of sequence, whitespace stripped) with the answer;
    for a ``numeric`` problem, any digit string of the same value."""
    completion = completion.strip()
    if problem.numeric:
        return completion.isdigit() and int(completion) == int(problem.answer)
    return completion == problem.answer
