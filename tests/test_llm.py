"""LLM-track tasks and tokenizer: deterministic generators with correct answers, a round-tripping
tokenizer."""

import pytest

from vla_razor.errors import CheckpointError
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
            return (
                str(a + b)
                if op == "+"
                else str(a - b)
                if op == "-"
                else "<"
                if a < b
                else ">"
                if a > b
                else "="
            )
    raise AssertionError(prompt)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_answer_is_right_and_generation_is_deterministic(name):
    task = get_task(name)
    problems = generate(name, 200, seed=3)
    assert problems == generate(name, 200, seed=3) and problems != generate(name, 200, seed=4)
    for p in problems:
        assert p.answer == _solve(p.prompt).zfill(task.pad_to) and is_correct(p, p.answer + " ")
        assert not is_correct(p, p.answer + "0")
        assert set(p.prompt + p.answer) <= set(ALPHABET)
    if task.operation in ("add", "sub", "cmp"):
        lengths = {
            len(x)
            for p in problems
            for x in p.prompt.rstrip("=").replace("?", "+").replace("-", "+").split("+")
        }
        assert lengths == set(range(task.min_digits, task.max_digits + 1))


def test_a_zero_padded_task_accepts_every_form_of_the_right_value_and_nothing_else():
    problem = generate("add_4_4_zeropad", 1, seed=0)[0]
    value = int(problem.prompt[:-1].split("+")[0]) + int(problem.prompt[:-1].split("+")[1])
    assert problem.answer == f"{value:06d}" and problem.numeric  # the reference SFT clones: padded to 6
    for form in (str(value), f"{value:06d}", f"{value:09d}", f" {value}\n"):
        assert is_correct(problem, form)
    for form in (str(value + 1), f"+{value}", f"{value}.0", "", f"{value} {value}"):
        assert not is_correct(problem, form)
    unpadded = generate("add_4_4", 1, seed=0)[0]
    assert not unpadded.numeric and not is_correct(unpadded, "0" + unpadded.answer)  # other tasks stay exact


def test_the_new_task_is_longer_than_anything_in_the_prior_suite():
    new = get_task(NEW_TASK)
    assert new.min_digits > max(
        get_task(t).max_digits for t in PRIOR_TASKS if get_task(t).operation == new.operation
    )
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
    model = build_model(
        TinyLMConfig(
            architecture=architecture, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
        ),
        tok,
    ).eval()
    batch = tok(["12+3=", "C9="], padding=True, return_tensors="pt")
    logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_policy(tmp_path)
    assert torch.equal(loaded.eval()(**batch).logits, logits) and loaded_tok.padding_side == "left"
    with pytest.raises(CheckpointError, match="not a Hugging Face checkpoint"):
        load_policy(tmp_path / "missing")
    with pytest.raises(ValueError, match="divisible"):
        TinyLMConfig(hidden_size=30, num_heads=4)


def _random_model(seed=0):
    import torch

    from vla_razor.llm.model import TinyLMConfig, build_model

    tok = build_tokenizer()
    torch.manual_seed(seed)
    model = build_model(
        TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tok
    ).eval()
    with torch.no_grad():  # large random weights: varied, confident outputs instead of one repeated token
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model, tok


def test_incremental_greedy_decoding_matches_transformers_generate():
    from vla_razor.llm.data import complete

    model, tok = _random_model()
    problems = generate("add_1_3", 8, 0) + generate("rev_1_6", 8, 0)  # prompts of many lengths: left padding
    ours = complete(model, tok, problems, 6)
    batch = tok([p.prompt for p in problems], padding=True, return_tensors="pt")
    out = model.generate(
        **batch,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    reference = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        row = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
        reference.append(tok.decode([t for t in row if t != tok.pad_token_id], skip_special_tokens=True))
    assert ours == reference and len(set(ours)) > 4


def test_sequence_kl_is_the_sum_of_per_token_kls_on_the_response():
    import torch
    from torch.distributions import Categorical, kl_divergence

    from vla_razor.llm.data import encode_batch, sample_responses
    from vla_razor.llm.kl import sequence_kl

    p_model, tok = _random_model(0)
    q_model, _ = _random_model(1)
    problems = generate("sub_1_3", 5, 1)
    responses, ended = sample_responses(
        p_model, tok, problems, 5, sample=True, generator=torch.Generator().manual_seed(0)
    )
    batch = encode_batch(tok, problems, responses, ended)
    ours = sequence_kl(p_model, q_model, batch)
    with torch.no_grad():
        lp = p_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lq = q_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for i in range(len(problems)):
        positions = (
            batch["response_mask"][i].nonzero().flatten() - 1
        )  # the logits that predict response tokens
        expected = sum(
            kl_divergence(Categorical(logits=lp[i, t]), Categorical(logits=lq[i, t]))
            for t in positions.tolist()
        )
        assert ours[i].item() == pytest.approx(float(expected), rel=1e-4)
        assert len(positions) == len(responses[i]) + int(ended[i])
    assert sequence_kl(p_model, p_model, batch).abs().max().item() < 1e-5


def test_kl_from_the_samplers_own_decoding_logits_equals_the_full_forward_kl():
    import torch

    from vla_razor.llm.data import encode_batch, sample_responses
    from vla_razor.llm.kl import measure_token_kl, sampled_sequence_kl, sequence_kl

    p_model, tok = _random_model(0)
    q_model, _ = _random_model(1)
    problems = generate("add_1_3", 12, 3)  # prompts of different lengths: left padding in both paths
    responses, ended, logits = sample_responses(
        p_model, tok, problems, 6, sample=True, generator=torch.Generator().manual_seed(0), return_logits=True
    )
    assert (
        any(ended)
        and not all(ended)
        and logits.shape[:2] == (12, max(len(r) + e for r, e in zip(responses, ended)))
    )
    reused = sampled_sequence_kl(logits, responses, ended, q_model, tok, problems)
    with torch.no_grad():
        full = sequence_kl(p_model, q_model, encode_batch(tok, problems, responses, ended))
    assert torch.allclose(reused, full, rtol=1e-4, atol=1e-6) and (full > 0).all()
    # and measure_token_kl is the mean of those sums, responses drawn from the first argument
    out = measure_token_kl(p_model, p_model, tok, problems, 6, torch.Generator().manual_seed(0))
    assert abs(out["kl/forward"]) < 1e-5 and abs(out["kl/reverse"]) < 1e-5 and out["kl/sequences"] == 12


def test_group_advantages_and_token_log_probs():
    import torch

    from vla_razor.llm.data import encode_batch
    from vla_razor.llm.finetune import token_log_probs
    from vla_razor.rl.objective import group_advantages

    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]).view(2, 4)).flatten()
    assert torch.allclose(adv[:4], torch.tensor([3.0, -1.0, -1.0, -1.0]) / 3**0.5, atol=1e-5)
    assert torch.all(adv[4:].abs() < 1e-5)  # no signal in a group that all succeeded
    model, tok = _random_model()
    problems = generate("copy_1_6", 3, 2)
    batch = encode_batch(tok, problems)
    with torch.no_grad():
        logp = token_log_probs(model, batch).sum(-1)
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits.log_softmax(-1)
    for i, p in enumerate(problems):
        ids = batch["input_ids"][i].tolist()
        start = len(ids) - len(p.answer) - 1  # the answer and eos end the row
        expected = sum(logits[i, t - 1, ids[t]].item() for t in range(start, len(ids)))
        assert logp[i].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="responses"):
        encode_batch(tok, problems, [[1]], [True])


@pytest.mark.slow
def test_llm_pretrain_grpo_and_sft_smoke_through_the_cli(tmp_path):
    import json

    from vla_razor.cli import main

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    assert (base / "tokenizer.json").is_file() and (base / "config.json").is_file()
    for algo in ("grpo", "sft"):
        assert (
            main(["llm", "finetune", "--algo", algo, "--smoke", f"runs_dir={tmp_path}", f"base={base}"]) == 0
        )
        run = tmp_path / f"llm-{algo}-add_4_4"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        iterations = [r for r in rows if "kl/forward" in r]
        assert [r["step"] for r in iterations] == [1, 2]  # the KL to the base, every iteration
        assert all(r["kl/forward"] >= 0 and r["kl/reverse"] >= 0 for r in iterations)
        assert ("reward/mean" in rows[0]) == (algo == "grpo") and ("loss/sft" in rows[0]) == (algo == "sft")
        final = json.loads((run / "eval" / "final.json").read_text())
        assert (
            set(final["tasks"]) == {"add_4_4", *PRIOR_TASKS} and (run / "snapshots" / "iter_000001").is_dir()
        )
    assert main(["llm", "finetune", "--algo", "sft", "base=/nonexistent"]) == 2


@pytest.mark.slow
def test_sft_on_rl_data_clones_only_what_the_rl_policy_solves(tmp_path, capsys):
    import json

    from vla_razor.cli import main
    from vla_razor.llm.data import sample_responses
    from vla_razor.llm.model import load_policy
    from vla_razor.llm.tasks import generate, is_correct

    # a teacher that answers comparisons most of the time (7 s of pretraining on cmp_1_4 alone)
    assert (
        main(
            [
                "llm",
                "pretrain",
                "--smoke",
                f"runs_dir={tmp_path}",
                "name=teacher",
                "prior_tasks=[cmp_1_4]",
                "steps=150",
                "batch_size=64",
                "lr=3e-3",
                "exposure_fraction=0",
            ]
        )
        == 0
    )
    teacher = tmp_path / "teacher" / "policy"
    common = [
        "llm",
        "finetune",
        "--algo",
        "sft",
        "--smoke",
        f"runs_dir={tmp_path}",
        f"base={teacher}",
        "task=cmp_1_4",
        "num_prompts=8",
        "group_size=4",
    ]
    assert (
        main([*common, "data=rl", f"rl_policy={teacher}"]) == 0
    )  # data=rl before rl_policy: order-free overrides
    rows = [
        json.loads(line)
        for line in (tmp_path / "llm-sft-rl-cmp_1_4" / "metrics.jsonl").read_text().splitlines()
    ]
    solved = [r["sft/rl_solved"] for r in rows if "sft/rl_solved" in r]
    assert len(solved) == 2 and all(0 < s < 1 for s in solved)  # some problems kept, not all
    # the share kept is the teacher's sampled accuracy on that iteration's problems (same seeds, same
    # generator)
    import torch

    model, tok = load_policy(teacher)
    problems = generate("cmp_1_4", 32, seed=0)
    responses, ended = sample_responses(
        model.eval(),
        tok,
        problems,
        4,
        sample=True,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    right = [
        e and is_correct(p, tok.decode(r, skip_special_tokens=True))
        for p, r, e in zip(problems, responses, ended)
    ]
    assert solved[0] == pytest.approx(sum(right) / len(right))
    # a policy that solves nothing gives a message, not a traceback
    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    weak = tmp_path / "llm-base-smoke" / "policy"
    assert main([*common, "name=nothing", "data=rl", f"rl_policy={weak}"]) == 2
    assert "solved none" in capsys.readouterr().err
    assert main([*common, "name=nothing", "data=rl"]) == 2  # rl_policy missing
    assert "rl_policy" in capsys.readouterr().err


@pytest.mark.slow
def test_razor_sweep_on_the_llm_track(tmp_path):
    import json

    from vla_razor.cli import main

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    assert main(["razor", "--smoke", "track=llm", f"runs_dir={tmp_path}", f"base={base}"]) == 0
    sweep = tmp_path / "razor-llm-smoke"
    plan = json.loads((sweep / "plan.json").read_text())
    # the smoke base solves nothing, so no GRPO run succeeds and the control has no RL data to clone
    assert (
        sorted(r["algo"] for r in plan["runs"]) == ["grpo", "grpo", "sft", "sft"]
        and "no RL run" in plan["control_skipped"]
    )
    points = json.loads((sweep / "report" / "points.json").read_text())
    tuned = [p for p in points if p["method"] != "base"]
    assert len(tuned) == 4 * 2  # a periodic evaluation and the final one per run
    assert all(
        set(PRIOR_TASKS) <= {k.split("/", 1)[1] for k in p if k.startswith("retention/")} for p in tuned
    )
    assert max(p["kl/forward"] for p in tuned) > 0 and all(
        0 <= p["features/change"] <= 1 + 1e-9 for p in tuned
    )
    assert "LLM track" in (sweep / "report" / "report.html").read_text()


def test_pretraining_batches_are_reproducible_and_hold_the_exposure_share():
    from vla_razor.llm.pretrain import LLMPretrainConfig, training_batch

    cfg = LLMPretrainConfig(batch_size=4000, exposure_fraction=0.05)
    batch = training_batch(cfg, 7)
    assert batch == training_batch(cfg, 7) and batch != training_batch(cfg, 8)
    share = sum(p.prompt.count("+") == 1 and len(p.prompt.split("+")[0]) >= 4 for p in batch) / len(batch)
    assert 0.035 < share < 0.065  # the 4-5 digit additions are the exposure task's
    assert all(
        len(p.prompt.split("+")[0]) <= 3
        for p in training_batch(LLMPretrainConfig(batch_size=500, exposure_fraction=0), 1)
        if "+" in p.prompt
    )


@pytest.mark.slow
def test_the_base_accuracy_cache_is_per_task_list(tmp_path):
    import yaml

    from vla_razor.cli import main
    from vla_razor.llm.razor import LLMTrack

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    rates = []
    for task in ("add_4_4", "add_4_4_zeropad"):  # two sweeps from one base, different new tasks
        (tmp_path / task / "run").mkdir(parents=True)
        (tmp_path / task / "run" / "config.yaml").write_text(
            yaml.safe_dump({"task": task, "prior_tasks": ["cmp_1_4"]})
        )
        rates.append(LLMTrack(str(base), tmp_path / task, 1, 0, 8).base_rates(4))
    assert set(rates[0]) == {"add_4_4", "cmp_1_4"} and set(rates[1]) == {"add_4_4_zeropad", "cmp_1_4"}
    assert len(list((base / "razor_cache").glob("accuracy-*.json"))) == 2


@pytest.mark.slow
def test_an_llm_run_resumed_from_a_checkpoint_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    """The checkpoint holds everything the run's randomness depends on (sampling generator, torch RNG,
    optimizer): resuming from iteration 2 of 4 ends with the same weights as never stopping."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from vla_razor.cli import main
    from vla_razor.rundir import RunDir

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    args = [
        "llm",
        "finetune",
        "--algo",
        "grpo",
        "--smoke",
        f"runs_dir={tmp_path}",
        f"base={base}",
        "iterations=4",
        "checkpoint_every=2",
        "temperature=1.5",
    ]
    assert main([*args, "name=whole"]) == 0
    assert main([*args, "name=cut"]) == 0
    cut = RunDir(tmp_path / "cut")
    # Make "cut" look killed right after its iteration-2 checkpoint: later checkpoints and outputs gone.
    for path in cut.list_checkpoints():
        if int(path.name.split("_")[1]) > 2:
            shutil.rmtree(path)
    (cut.checkpoints / "LATEST").unlink()
    for path in ("policy", "eval/final.json"):
        target = cut.path / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert main([*args, "name=cut", "--resume"]) == 0
    whole = load_file(str(tmp_path / "whole" / "policy" / "model.safetensors"))
    resumed = load_file(str(cut.path / "policy" / "model.safetensors"))
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    steps = [r["step"] for r in cut.read_metrics() if "kl/forward" in r]
    assert steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_both_tracks_write_the_same_run_directory_and_metric_names(tmp_path, smoke_base):
    """A robot PPO smoke run and an LLM GRPO smoke run go through one harness: the same files, the same
    shared metric names on every iteration and evaluation, the same final.json schema."""
    import json
    import subprocess
    import sys

    from vla_razor.cli import main

    robot = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla_razor.cli",
            "finetune",
            "--algo",
            "ppo",
            "--smoke",
            f"runs_dir={tmp_path}",
            f"base={smoke_base}/base-smoke/policy",
            "eval_every=1",
            "total_env_steps=96",
            "num_decisions=2",
            "name=robot",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert robot.returncode == 0, robot.stdout[-2000:] + robot.stderr[-2000:]
    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    assert (
        main(
            [
                "llm",
                "finetune",
                "--algo",
                "grpo",
                "--smoke",
                f"runs_dir={tmp_path}",
                f"base={base}",
                "name=llm",
            ]
        )
        == 0
    )

    def layout(run):
        return sorted(p.name for p in run.iterdir() if p.name not in ("videos", "critic"))

    def rows(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    robot_run, llm_run = tmp_path / "robot", tmp_path / "llm"
    assert layout(robot_run) == layout(llm_run)
    assert (robot_run / "eval" / "iter_000001.json").is_file()
    assert (llm_run / "eval" / "iter_000001.json").is_file()
    shared = {
        "env_steps",
        "kl/forward",
        "kl/reverse",
        "kl/states",
        "kl/penalty_coef",
        "time/kl_s",
    }
    evaluated = {"success/new_task", "retention/mean"}
    for run in (robot_run, llm_run):
        iterations = [r for r in rows(run) if "kl/forward" in r]
        assert iterations and all(shared <= set(r) for r in iterations), (run, sorted(iterations[0]))
        assert any(evaluated <= set(r) for r in iterations)
        finals = [r for r in rows(run) if "final/success/new_task" in r]
        assert len(finals) == 1 and {"final/retention/mean", "final/forgetting/mean"} <= set(finals[0])
    robot_final = json.loads((robot_run / "eval" / "final.json").read_text())
    llm_final = json.loads((llm_run / "eval" / "final.json").read_text())
    assert set(robot_final) == set(llm_final) and robot_final["meta"]["algo"] == "ppo"
    assert llm_final["meta"]["algo"] == "grpo" and llm_final["base"] is not None
    assert llm_final["meta"]["env_steps"] == 2 * 2 * 2  # responses sampled: 2 iterations x 2 prompts x 2


@pytest.mark.slow
def test_a_diverging_run_in_an_llm_sweep_is_reported_and_the_others_finish(tmp_path):
    """One LLM run that diverges (lr 1e30) is marked diverged with its message; the sweep goes on."""
    import json

    from vla_razor.cli import main

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    code = main(
        [
            "razor",
            "--smoke",
            "track=llm",
            f"runs_dir={tmp_path}",
            f"base={base}",
            "sft_grid={'lr': [1e-4, 1e30]}",
        ]
    )
    assert code == 0
    statuses = {
        s["name"]: s for s in json.loads((tmp_path / "razor-llm-smoke" / "status.json").read_text())["runs"]
    }
    diverged = [s for s in statuses.values() if s["status"] == "diverged"]
    assert [s["name"] for s in diverged] == ["sft-lr1e+30-seed0"], statuses
    assert "the run stopped" in diverged[0]["error"]
    assert all(s["status"] == "done" for n, s in statuses.items() if n != "sft-lr1e+30-seed0"), statuses


def test_weights_an_update_overflowed_stop_the_run_with_the_harness_message(tmp_path):
    """An update that leaves inf in the weights (GRPO or SFT: the harness checks after every iteration)
    stops the run with NonFiniteError naming the weight, before any NaN reaches a sample or a KL."""
    import torch

    from vla_razor.errors import NonFiniteError
    from vla_razor.llm.harness import LLMFinetuneConfig, LLMFinetuneHarness

    model, tok = _random_model()
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    cfg = LLMFinetuneConfig(base=str(tmp_path / "base"), runs_dir=str(tmp_path), name="inf", kl_states=4)
    ft = LLMFinetuneHarness(cfg, "grpo")
    healthy = ft.track_kl(ft.kl_problems())  # the base against itself: zero KL, no error
    assert abs(healthy["kl/forward"]) < 1e-5 and healthy["kl/states"] == 4
    name, weight = next(iter(ft.policy.named_parameters()))
    with torch.no_grad():
        weight.view(-1)[0] = float("inf")
    ft.step()
    with pytest.raises(
        NonFiniteError, match=rf"weight {name} holds NaN or inf.*iteration 1; the run stopped"
    ):
        ft.track_kl(ft.kl_problems())
