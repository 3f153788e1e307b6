# The two commands: `make run` (whole pipeline on MovieLens 100K) and `make test`.
# Both run `make setup` first, which is idempotent and takes seconds once set up.
.PHONY: setup run test test-fast lint docs

setup:
	@bash scripts/setup.sh

# Extra flags for `recsys run`, e.g. make run RUN_ARGS="--config my.toml"
RUN_ARGS ?=
run: setup
	.venv/bin/recsys run $(RUN_ARGS)

# Everything, end-to-end tests included (those are marked e2e and skipped by plain pytest).
# Also installs the test-only tools (headless Chromium for the run report's browser test).
# Test files run on TEST_WORKERS pytest-xdist workers; a file stays on one worker, so its
# module fixtures (a served baseline, a first pipeline run) are built once. Files go to the
# workers in collection order, the longest first (tests/conftest.py: LONGEST_FIRST).
TEST_WORKERS ?= 2
test: setup
	@bash scripts/setup.sh --test-tools
	.venv/bin/pytest -m "e2e or not e2e" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		$(PYTEST_ARGS)

# Unit tests only (a minute or two).
test-fast: setup
	.venv/bin/pytest $(PYTEST_ARGS)

# ruff (pycodestyle, pyflakes, bugbear, isort) and mypy over the installed package layout.
lint: setup
	.venv/bin/ruff check .
	@bash scripts/typecheck.sh

# The configuration reference, generated from `recsys config` (a test checks it is current).
docs: setup
	.venv/bin/recsys config --markdown > docs/configuration.md
