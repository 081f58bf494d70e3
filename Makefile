# The README's two commands: `make quickstart` and `make test`. Both set everything up first.
.PHONY: setup setup-lerobot quickstart test test-fast test-lerobot lint bench clean

setup:
	bash scripts/setup.sh

# .venv-lerobot: Python 3.12, LeRobot 0.6.1, ManiSkill and vla-razor (docs/lerobot.md).
setup-lerobot: setup
	bash scripts/setup_lerobot.sh

quickstart: setup
	.venv/bin/vla-razor quickstart

# Every test, both tiers (what CI runs), after the lint: in .venv (Python 3.11, torch 2.13, numpy 1), then in
# .venv-lerobot (Python 3.12, torch 2.11, numpy 2) the LeRobot tests and the fast tier. pytest exits 5 when
# it collects no test; that is not a failure of the set-up.
test: setup setup-lerobot lint
	.venv/bin/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(MAKE) --no-print-directory test-lerobot

# The LeRobot environment's share of `make test`.
test-lerobot: setup-lerobot
	HF_HUB_OFFLINE=1 .venv-lerobot/bin/python -m pytest -m "lerobot or not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The inner loop: everything but the end-to-end tests through the CLI (marked slow).
test-fast: setup
	.venv/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	.venv/bin/python benchmarks/bench_token_kl.py
