# The README's two commands: `make quickstart` and `make test`. Both set everything up first.
.PHONY: setup quickstart test test-all bench clean

setup:
	bash scripts/setup.sh

quickstart: setup
	.venv/bin/vla-razor quickstart

# pytest exits 5 when it collects no test; that is not a failure of the set-up.
test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-all: setup
	.venv/bin/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

bench: setup
	.venv/bin/python benchmarks/bench_token_kl.py
