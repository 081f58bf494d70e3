# The README's two commands: `make quickstart` and `make test`. Both set everything up first.
.PHONY: setup quickstart test test-fast lint bench clean

setup:
	bash scripts/setup.sh

quickstart: setup
	.venv/bin/vla-razor quickstart

# Every test, both tiers (what CI runs), after the lint. pytest exits 5 when it collects no test; that is
# not a failure of the set-up.
test: setup lint
	.venv/bin/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The inner loop: everything but the end-to-end tests through the CLI (marked slow).
test-fast: setup
	.venv/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	.venv/bin/python benchmarks/bench_token_kl.py
