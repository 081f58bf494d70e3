"""The razor analysis statistics: Pareto frontiers and polynomial fits against scipy and brute force."""

import numpy as np
import pytest
import scipy.stats

from vla_razor.analysis import frontier_area, pareto_frontier, polyfit, rank_predictors


def brute_force_frontier(x, y):
    keep = []
    for i in range(len(x)):
        dominated = any(x[j] >= x[i] and y[j] >= y[i] and (x[j] > x[i] or y[j] > y[i]) for j in range(len(x)))
        if not dominated:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_pareto_frontier_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 6, 30) / 5, rng.integers(0, 6, 30) / 5  # ties on purpose
    got = pareto_frontier(x, y)
    want = brute_force_frontier(x, y)
    # duplicates of a frontier point: keep one representative of each distinct frontier point
    assert {(x[i], y[i]) for i in got} == {(x[i], y[i]) for i in want}
    assert list(x[got]) == sorted(x[got])


def test_frontier_area_of_a_staircase():
    # points (0.2, 0.9), (0.6, 0.5), (1.0, 0.1): area = 0.2*0.9 + 0.4*0.5 + 0.4*0.1
    x, y = np.array([0.2, 0.6, 1.0, 0.1]), np.array([0.9, 0.5, 0.1, 0.3])
    assert frontier_area(x, y) == pytest.approx(0.2 * 0.9 + 0.4 * 0.5 + 0.4 * 0.1)
    assert frontier_area(x, y + 0.05) > frontier_area(x, y)


def test_linear_fit_matches_scipy_and_quadratic_fits_a_parabola():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, 40)
    y = 0.7 * x + 0.2 + rng.normal(0, 0.3, 40)
    fit = polyfit(x, y, 1)
    ref = scipy.stats.linregress(x, y)
    assert fit.coefficients == pytest.approx((ref.slope, ref.intercept))
    assert fit.r2 == pytest.approx(ref.rvalue**2)
    quad = polyfit(x, 2 * x**2 - x + 1, 2)
    assert quad.r2 == pytest.approx(1.0) and quad.coefficients == pytest.approx((2, -1, 1))
    with pytest.raises(ValueError, match="needs more than 2 points"):
        polyfit([1, 2], [1, 2], 2)


def test_predictors_are_ranked_by_r2():
    rng = np.random.default_rng(1)
    kl = rng.uniform(0, 2, 30)
    forgetting = 0.3 * kl + rng.normal(0, 0.02, 30)
    ranked = rank_predictors(
        {"noise": rng.normal(size=30), "kl/forward": kl, "half": kl + rng.normal(0, 0.5, 30)}, forgetting
    )
    assert [name for name, _ in ranked] == ["kl/forward", "half", "noise"]
    assert ranked[0][1].r2 > 0.9


def test_report_html_renders_lists_tables_and_inlines_figures(tmp_path):
    import base64

    from vla_razor.analysis.render import render_html

    png = tmp_path / "pareto.png"
    import matplotlib.pyplot as plt

    plt.figure(figsize=(1, 1))
    plt.savefig(png)
    plt.close()
    summary = (
        "# RL's Razor report\n\n## Findings\n\n- first <finding>\n- second\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "![Pareto frontier](pareto.png)\n"
    )
    page = render_html(summary, {"pareto": png}, {}, "t")
    assert "<li>first &lt;finding&gt;</li>" in page and "<li>second</li>" in page and "<p>- " not in page
    assert "<th>a</th>" in page and "<td>2</td>" in page
    embedded = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(embedded) == png.read_bytes()
    assert 'src="pareto.png"' not in page and page.count("<h1>") == 1
