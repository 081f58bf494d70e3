"""The razor analysis: Pareto frontiers of new-task success vs retention, and forgetting fits."""

from .fits import Fit, frontier_area, pareto_frontier, polyfit, rank_predictors

__all__ = ["Fit", "frontier_area", "pareto_frontier", "polyfit", "rank_predictors"]
