"""The razor report's pages: ``summary.md`` and the self-contained ``report.html``, rendered from the Jinja2
templates in ``templates/`` (the Markdown to HTML by Python-Markdown)."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import jinja2

from .numbers import METHOD_LABELS, PREDICTOR_LABELS, findings, scored_success

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt(value, pct: bool = False) -> str:
    """A number as the report's tables print it: 3 significant digits, or a percentage; a dash when
    missing."""
    if _missing(value):
        return "–"
    return f"{value:.0%}" if pct else f"{value:.3g}"


def _points(value) -> str:  # a difference of rates, in signed percentage points
    return "–" if _missing(value) else f"{value * 100:+.1f}"


def _r2_pair(fit) -> str:
    return f"{fmt(fit['r2_linear'])} / {fmt(fit['r2_quadratic'])}" if fit else "–"


TEMPLATES.filters.update(pct=lambda v: fmt(v, True), num=fmt, points=_points)
TEMPLATES.globals.update(
    label=METHOD_LABELS.__getitem__,
    predictor_label=PREDICTOR_LABELS.__getitem__,
    r2_pair=_r2_pair,
    scored_success=scored_success,
)


def final_table(points: list[dict]) -> list[dict]:
    """The base and every run's final policy, by method then run name."""
    order = list(METHOD_LABELS)
    finals = [p for p in points if p["tag"] in ("final", "base")]
    rows = sorted(finals, key=lambda p: (order.index(p["method"]), p["run"]))
    return [{"kl/forward": None, "kl/reverse": None, **p} for p in rows]


def summary_markdown(
    analysis: dict, points: list[dict], figures: dict[str, str], control_note: str = ""
) -> str:
    """``summary.md``: the findings, tables and (relative) figure links of one analysis."""
    per_task = [{"own_states": None, "new_task_states": None, **r} for r in analysis.get("per_task", [])]
    a = {
        "frontier_bootstrap": None,
        "matched": None,
        "chain_vs_action": None,
        "penalty": None,
        "run_level": None,
        **analysis,
        "per_task": per_task,
    }
    return TEMPLATES.get_template("summary.md.j2").render(
        a=a,
        findings=findings(analysis),
        figures={"per_task": None, **figures},
        finals=final_table(points),
        control_note=control_note,
    )


def _embed(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def render_html(summary_md: str, figures: dict[str, Path], videos: dict[str, list[Path]], title: str) -> str:
    """A self-contained page: the summary rendered by Python-Markdown, every figure and video inlined as data
    URIs."""
    import markdown

    by_name = {p.name: p for p in figures.values()}
    text = "\n".join(
        line for line in summary_md.splitlines() if not line.startswith("# ")
    )  # the page has its own h1
    # The summary is text, never markup: escape it, so a "<" in a finding or a run name stays a character.
    body = markdown.markdown(html.escape(text, quote=False), extensions=["tables"])

    def inline(match):
        path = by_name.get(html.unescape(match.group(2)))
        return f'{match.group(1)}{_embed(path, "image/png")}"' if path else match.group(0)

    body = re.sub(r'(<img[^>]*? src=")([^"]+)"', inline, body)
    body = body.replace("<img ", '<img class="figure" ')
    clips = {
        label: [(p.stem.split("_", 1)[-1], _embed(p, "video/mp4")) for p in paths]
        for label, paths in videos.items()
    }
    template = jinja2.Environment(
        loader=TEMPLATES.loader, autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    return template.get_template("report.html.j2").render(title=title, body=body, videos=clips)
