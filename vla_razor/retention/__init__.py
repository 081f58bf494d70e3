"""Retention suites: success on every task of a suite, and forgetting against the base policy."""

from .evaluate import SuiteResult, base_results, evaluate_suite

__all__ = ["SuiteResult", "base_results", "evaluate_suite"]
