# Every target is a one-liner over the CLI. `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RESULTS ?= results/optimizers.jsonl

.PHONY: help install run test lint typecheck docs bench optimizers regularizers diagnose datasets suite check plot report clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's|$$(RESULTS)|$(RESULTS)|' | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(BIN)/dnnbench: pyproject.toml
	$(PY) -m venv $(VENV) && $(BIN)/pip install -q -e '.[test,ray]'
	@touch $@

install: $(BIN)/dnnbench  ## create .venv and install dnnbench with its test tools

run: install  ## the main job: dnnbench optimizers on the bundled digits
	$(BIN)/dnnbench optimizers

test: install  ## the test suite (the same command CI runs)
	$(BIN)/pytest

lint: install  ## ruff over the package, tests and benchmarks
	$(BIN)/ruff check dnnbench tests benchmarks examples docs/hooks && $(BIN)/ruff format --check dnnbench tests benchmarks examples docs/hooks

typecheck: install  ## mypy over the package (settings: [tool.mypy] in pyproject.toml)
	$(BIN)/mypy

$(BIN)/mkdocs: pyproject.toml $(BIN)/dnnbench
	$(BIN)/pip install -q -e '.[docs]'
	@touch $@

docs: $(BIN)/mkdocs  ## the docs site (mkdocs-material, CLI reference generated) to site/; strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install  ## speed: matmul floor, epoch time, trial scaling, 5-optimizer suite vs Keras-JAX and PyTorch (if installed)
	$(BIN)/pip install -q -e '.[test,bench]' && $(BIN)/python benchmarks/speed.py --peers --trials 1,4,16,64

optimizers: install  ## the optimizer comparison, results to $(RESULTS)
	$(BIN)/dnnbench optimizers --seeds 3 --out $(RESULTS) --force

regularizers: install  ## the regularization comparison
	$(BIN)/dnnbench regularizers --out results/regularizers.jsonl --force

diagnose: install  ## diagnose the reference model
	$(BIN)/dnnbench diagnose

datasets: install  ## list the datasets and what is cached
	$(BIN)/dnnbench datasets

suite: install  ## the CI suite (benchmarks/suites/ci.toml), results to results/ci.jsonl
	$(BIN)/dnnbench run benchmarks/suites/ci.toml --out results/ci.jsonl --force

check: suite  ## the CI gate: run the CI suite, then check it against benchmarks/baselines/ci.jsonl
	$(BIN)/dnnbench check benchmarks/baselines/ci.jsonl results/ci.jsonl

plot: install  ## learning curves of results/ci.jsonl (from `make suite`) to results/ci.png
	@test -f results/ci.jsonl || { echo "make plot: results/ci.jsonl does not exist yet; run 'make suite' first" >&2; exit 2; }
	$(BIN)/dnnbench plot results/ci.jsonl --out results/ci.png --force

report: install  ## one self-contained HTML page of $(RESULTS) (from `make optimizers`) to results/report.html
	@test -f $(RESULTS) || { echo "make report: $(RESULTS) does not exist yet; run 'make optimizers' first" >&2; exit 2; }
	$(BIN)/dnnbench report $(RESULTS) --html results/report.html --force

clean:  ## remove the virtual environment, caches and the built site (results/ is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache site
