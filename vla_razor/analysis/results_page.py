"""The results page (docs/results.md) and the README's headline numbers, generated from the committed
archives' ``analysis.json`` and ``points.json`` alone, so that neither can drift from the data.

Each claim is stated with its estimate, its 95% interval over runs (the hierarchical bootstrap of
:mod:`.runstats`), the runs per arm it rests on, the command that reproduces it and the commit of the code
that wrote the analysis. An arm with fewer than :data:`~.runstats.MIN_RUNS` runs gets no interval, and the
page says so in its "what the data do not show" list, with checkpoints chosen on the episodes that score them,
points at the retention floor and the runs a difference would need.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .numbers import MATCH_GAP, METHOD_LABELS, PREDICTOR_LABELS, scored_success
from .render import TEMPLATES
from .runstats import MIN_RUNS, too_few_runs


@dataclass(frozen=True)
class Track:
    """One archived sweep the page reports."""

    archive: str
    """Its directory under the results root (``docs/results/<archive>``)."""
    title: str
    command: str
    """The command that runs (or re-reports, with ``--report-only``) the sweep into its archive."""


TRACKS = (
    Track(
        "razor-robot",
        "Robot: flow policies on ManiSkill",
        "vla-razor razor --config configs/razor.yaml --archive docs/results/razor-robot",
    ),
    Track(
        "razor-metaworld",
        "Meta-World: flow policies, MT10 as the prior tasks",
        "vla-razor razor --config configs/razor_metaworld.yaml --archive docs/results/razor-metaworld",
    ),
    Track(
        "razor-lerobot",
        "LeRobot: a DiffusionPolicy trained by LeRobot, fine-tuned here",
        ".venv-lerobot/bin/vla-razor razor --config configs/razor_lerobot.yaml --archive "
        "docs/results/razor-lerobot",
    ),
    Track(
        "razor-llm",
        "LLM: a small Llama on arithmetic, GRPO against SFT",
        "vla-razor razor --config configs/razor_llm_zeropad.yaml --archive docs/results/razor-llm",
    ),
)
HEADLINE_START, HEADLINE_END = "<!-- results:headline:start -->", "<!-- results:headline:end -->"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _rank_verdict(best: str, p_best: float, bar: float = 0.95) -> str:
    """The verdict on "forward KL predicts best": shown when it ranks first in at least ``bar`` of the
    bootstrap resamples; otherwise which predictor leads, and by how much."""
    if best != "kl/forward":
        label = PREDICTOR_LABELS.get(best, best)
        return f"not shown: first most often is {label} ({p_best:.0%} of resamples)"
    if p_best >= bar:
        return "shown"
    return f"not shown: forward KL leads but is first in only {p_best:.0%} of resamples (bar: {bar:.0%})"


def _verdict(low: float, high: float) -> str:
    return "shown" if low > 0 else "reversed" if high < 0 else "not shown (the interval holds 0)"


def _mean_interval(values: list[float]) -> tuple[float, list[float] | None]:
    """Mean of run-level values with Student's t interval (None below MIN_RUNS runs)."""
    mean = float(np.mean(values))
    if len(values) < MIN_RUNS:
        return mean, None
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    return mean, [float(ci.low), float(ci.high)]


def claims(track: Track, analysis: dict, points: list[dict], teacher: str | None = None) -> list[dict]:
    """The claims one analysis supports or not: matched differences at each target, the predictor ranking over
    runs, the frontier areas and the control's forgetting (``teacher``: the run whose rollouts it cloned)."""
    commit = analysis.get("commit") or "not recorded"
    out = []

    def claim(text, estimate, interval, runs, verdict, welch="–"):
        out.append(
            {
                "claim": text,
                "estimate": estimate,
                "interval": interval,
                "welch": welch,
                "runs": runs,
                "verdict": verdict,
                "command": track.command + " --report-only",
                "commit": commit,
            }
        )

    run_level = analysis.get("run_level") or {}
    for row in run_level.get("comparisons", []):
        rl, sft = row["runs"].get("rl", 0), row["runs"].get("sft", 0)
        text = f"SFT forgets more than RL at {row['target']:.0%} new-task success"
        d = row.get("sft_minus_rl")
        if d is None:
            claim(text, "–", "–", f"{rl} / {sft}", "no comparison (an arm has no run there)")
            continue
        boot, welch = d["bootstrap"], d.get("welch") or {}
        if boot.get("interval"):
            low, high = boot["interval"]
            verdict = _verdict(low, high)
            if welch.get(
                "interval"
            ):  # shown only where both intervals say so (the bootstrap is narrow for few runs)
                w_low, w_high = welch["interval"]
                if _verdict(w_low, w_high) != verdict:
                    verdict = "not shown (the Welch interval holds 0)" if verdict == "shown" else verdict
            success = scored_success(row)
            if len(success) == 2 and abs(success["rl"] - success["sft"]) > MATCH_GAP:
                verdict = (
                    f"not matched: new-task success {success['rl']:.0%} (RL) vs {success['sft']:.0%} (SFT) "
                    "on the scored episodes"
                )
            claim(
                text,
                f"{_points(boot['estimate'])} points",
                f"[{_points(low)}, {_points(high)}]",
                f"{rl} / {sft}",
                verdict,
                f"[{_points(welch['interval'][0])}, {_points(welch['interval'][1])}]"
                if welch.get("interval")
                else "–",
            )
        else:
            note = boot["note"] if boot["note"].startswith("no interval") else f"no interval: {boot['note']}"
            # the arms by name (archives written before the bootstrap named them say "first" / "second")
            note = too_few_runs({METHOD_LABELS["rl"]: rl, METHOD_LABELS["sft"]: sft}) or note
            claim(text, f"{_points(boot['estimate'])} points", "none", f"{rl} / {sft}", note)
    fits, ranks = run_level.get("fits") or {}, run_level.get("rank_probabilities") or {}
    if ranks:
        best = max(ranks, key=lambda n: ranks[n][0])
        fk = fits.get("kl/forward", {})
        runs = str(fk.get("runs", "–"))
        r2 = fk.get("r2")
        interval = (
            f"R² {r2:.2f} [{fk['interval'][0]:.2f}, {fk['interval'][1]:.2f}]" if r2 is not None else "–"
        )
        p_first = ranks.get("kl/forward", [math.nan])[0]
        claim(
            "Forward KL is the best predictor of forgetting (one point per run and target)",
            f"P(rank 1) = {p_first:.0%}",
            interval,
            runs,
            _rank_verdict(best, ranks[best][0]),
        )
    boot = analysis.get("frontier_bootstrap")
    if boot and "difference" in boot and "runs" in boot:
        d = boot["difference"]
        areas = analysis.get("frontier_area", {})
        claim(
            "RL's Pareto frontier (new-task success × retention) lies above SFT's",
            f"{areas.get('rl', math.nan) - areas.get('sft', math.nan):+.3f} area",
            f"[{d['low']:+.3f}, {d['high']:+.3f}]",
            f"{boot['runs']['rl']} / {boot['runs']['sft']}",
            _verdict(d["low"], d["high"]),
        )
    control = analysis.get("control") or []
    if control:
        mean, interval = _mean_interval([p["forgetting"] for p in control])
        kl = float(np.mean([p.get("kl/forward", math.nan) for p in control]))
        success = float(np.mean([p["new_task_success"] for p in control]))
        teacher_final = next((p for p in points if p["run"] == teacher and p["tag"] == "final"), None)
        source = (
            f"the rollouts of {teacher} ({teacher_final['new_task_success']:.0%} final new-task success)"
            if teacher_final
            else "RL rollouts"
        )
        claim(
            f"SFT on {source}, the control ({success:.0%} new-task success, forward KL {kl:.1f}): forgetting",
            f"{mean * 100:.1f} points",
            f"[{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]" if interval else "none",
            f"{len(control)} (control)",
            "descriptive",
        )
    return out


def not_shown(track: Track, analysis: dict) -> list[str]:
    """What the analysis cannot say, from its own numbers."""
    out = []
    run_level = analysis.get("run_level")
    if not run_level:
        out.append(
            f"{track.title}: no run-level comparison (this sweep declares no targets, or predates them)."
        )
        return out
    if "same episodes" in run_level.get("selection", []):
        counts = [
            f"at {row['target']:.0%} "
            + ", ".join(
                f"{METHOD_LABELS[m]} {row['same_episodes'].get(m, 0)} of {row['runs'][m]}"
                for m in ("rl", "sft")
                if row["runs"].get(m)
            )
            for row in run_level.get("comparisons", [])
            if "same_episodes" in row and any(row["runs"].get(m) for m in ("rl", "sft"))
        ]
        out.append(
            f"{track.title}: checkpoints chosen on the episodes that also score them (runs made before "
            "validation episodes existed), which favours points that landed near a target by chance"
            + (f": {'; '.join(counts)}." if counts else ".")
        )
    for row in run_level.get("comparisons", []):
        target = f"{row['target']:.0%}"
        for method in ("rl", "sft"):
            n = row["runs"].get(method, 0)
            if n < MIN_RUNS:
                out.append(f"{track.title}: at {target}, {METHOD_LABELS[method]} has {n} runs: no interval.")
        for method, n in sorted(row.get("at_floor", {}).items()):
            if n and method in ("rl", "sft"):
                out.append(
                    f"{track.title}: at {target}, {n} of {row['runs'][method]} {METHOD_LABELS[method]} "
                    "checkpoints keep 0% of every prior task: their forgetting is bounded by the base's "
                    "retention, not measured."
                )
        episodes = row.get("scored_episodes", {})
        if {"rl", "sft"} <= set(episodes) and len({*episodes["rl"], *episodes["sft"]}) > 1:
            scored = [
                f"{METHOD_LABELS[m]} on "
                + ", ".join(f"{n} episodes ({k} of {row['runs'][m]})" for n, k in episodes[m].items())
                for m in ("rl", "sft")
            ]
            out.append(
                f"{track.title}: at {target}, the chosen checkpoints' new-task success was scored on "
                f"different episode counts, {' and '.join(scored)}: an evaluation of n episodes plays the "
                "first n initial states, so the checkpoints' rates are not measured on the same states."
            )
        success = scored_success(row)
        if len(success) == 2 and abs(success["rl"] - success["sft"]) >= 0.03:
            out.append(
                f"{track.title}: at {target}, the chosen checkpoints' new-task success averages "
                f"{success['rl']:.0%} for RL and {success['sft']:.0%} for SFT on the episodes that score "
                "them (each was chosen within the window around the target on its selection episodes): the "
                "arms are matched only that closely."
            )
        d = row.get("sft_minus_rl")
        if d and d["bootstrap"].get("interval") and row.get("runs_needed"):
            low, high = d["bootstrap"]["interval"]
            if low <= 0 <= high:
                out.append(
                    f"{track.title}: at {target}, a difference of {_points(d['bootstrap']['estimate'])} "
                    f"points needs about {row['runs_needed']} runs per method to be shown (80% power)."
                )
    boot = analysis.get("frontier_bootstrap") or {}
    single = {m: n for m, n in (boot.get("single_run_configurations") or {}).items() if n}
    if single:
        counts = ", ".join(f"{METHOD_LABELS[m]} {n}" for m, n in single.items())
        out.append(
            f"{track.title}: the frontier interval resamples runs within each configuration; configurations "
            f"with one run ({counts}) enter every resample as they are, so their run-to-run spread is not in "
            "it."
        )
    return out


def final_table(points: list[dict]) -> list[dict]:
    """Per method: runs, and the median and range over runs of their final policies' numbers."""
    rows = []
    base = next((p for p in points if p["method"] == "base"), None)
    if base:
        rows.append(
            {
                "method": "base",
                "runs": "–",
                **{k: f"{base[k]:.0%}" for k in ("new_task_success", "retention")},
            }
        )
        rows[-1].update({"forgetting": "–", "kl/forward": "–"})
    for method in METHOD_LABELS:
        finals = [p for p in points if p["method"] == method and p["tag"] == "final"]
        if not finals:
            continue

        def spread(key, pct):
            v = np.array([p.get(key, math.nan) for p in finals], float)
            if not np.isfinite(v).all():
                return "–"
            f = (lambda x: f"{x:.0%}") if pct else (lambda x: f"{x:.1f}")
            return f"{f(np.median(v))} ({f(v.min())}–{f(v.max())})"

        rows.append(
            {
                "method": method,
                "runs": len(finals),
                "new_task_success": spread("new_task_success", True),
                "retention": spread("retention", True),
                "forgetting": spread("forgetting", True),
                "kl/forward": spread("kl/forward", False),
            }
        )
    return rows


def _load(root: Path) -> list[dict]:
    sections = []
    for track in TRACKS:
        directory = root / track.archive
        if not (directory / "analysis.json").is_file():
            sections.append({"track": track, "analysis": None})
            continue
        analysis = json.loads((directory / "analysis.json").read_text())
        points = json.loads((directory / "points.json").read_text())
        plan = (
            json.loads((directory / "plan.json").read_text()) if (directory / "plan.json").is_file() else {}
        )
        teacher = Path(plan["control_teacher"]).name if plan.get("control_teacher") else None
        figure = next(
            (f for f in ("pareto.png", "forgetting_vs_forward_kl.png") if (directory / f).is_file()), None
        )
        sections.append(
            {
                "track": track,
                "analysis": analysis,
                "claims": claims(track, analysis, points, teacher),
                "not_shown": not_shown(track, analysis),
                "table": final_table(points),
                "figure": f"results/{track.archive}/{figure}" if figure else None,
            }
        )
    return sections


def results_page(root: Path) -> str:
    """docs/results.md from the archives under ``root`` (docs/results)."""
    return TEMPLATES.get_template("results.md.j2").render(sections=_load(Path(root)))


def headline(root: Path) -> str:
    """The README's headline block: the robot sweep's claims, one line each (between the markers)."""
    sections = [s for s in _load(Path(root)) if s["analysis"] is not None]
    lines = [HEADLINE_START]
    for section in sections[:1]:
        for c in section["claims"]:
            interval = (
                f", 95% interval over runs {c['interval']}"
                if c["interval"].startswith("[")
                else f" ({c['interval']})"
                if c["interval"] not in ("none", "–")
                else ""
            )
            lines.append(f"- {c['claim']}: {c['estimate']}{interval}; runs {c['runs']}: **{c['verdict']}**.")
    lines.append(HEADLINE_END)
    return "\n".join(lines)


def replace_headline(readme: str, block: str) -> str:
    """``readme`` with its headline block replaced by ``block`` (a ValueError when it has no markers)."""
    pattern = re.compile(re.escape(HEADLINE_START) + ".*?" + re.escape(HEADLINE_END), re.S)
    if not pattern.search(readme):
        raise ValueError(f"the README has no {HEADLINE_START} ... {HEADLINE_END} block")
    return pattern.sub(lambda _: block, readme, count=1)


def readme_headline(readme: str) -> str | None:
    """The headline block as it stands in ``readme`` (None without markers)."""
    pattern = re.compile(re.escape(HEADLINE_START) + ".*?" + re.escape(HEADLINE_END), re.S)
    found = pattern.search(readme)
    return found.group(0) if found else None
