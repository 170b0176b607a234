# mlmrun: everything runs from a local virtual environment (.venv), so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_SPEC := $(if $(wildcard specs/abortion.yaml),specs/abortion.yaml,specs/pig_slope.yaml)
PIN_BLAS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: install run test fuzz bench schema lint clean

install: $(STAMP)

# The stamp makes `make install` free when nothing changed; pyproject.toml changes reinstall.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/mlmrun fit $(RUN_SPEC)

test: install browser
	$(PIN_BLAS) $(BIN)/pytest -q

# Headless chromium for the report's browser test (tests/report/test_report_browser.py): installed with apt
# when missing and possible; otherwise that test is skipped and says why.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed (no apt or not root): the browser test of the reports will be skipped"

# Long property-based fuzz of validate/fit on mutated specs and data (tests/fuzz); FUZZ_EXAMPLES cases,
# every outcome logged to .fuzz/log.jsonl and counted at the end. `make test` runs a few hundred of them.
FUZZ_EXAMPLES ?= 20000
FUZZ_SEED ?= 1
fuzz: install
	mkdir -p .fuzz && rm -f .fuzz/log.jsonl
	$(PIN_BLAS) MLMRUN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MLMRUN_FUZZ_SEED=$(FUZZ_SEED) MLMRUN_FUZZ_LOG=.fuzz/log.jsonl \
		$(BIN)/pytest -q -s -p no:cacheprovider tests/fuzz; status=$$?; \
		$(BIN)/python -m tests.fuzz.summary .fuzz/log.jsonl; exit $$status

bench: install
	$(PIN_BLAS) $(BIN)/python bench/run.py

# A million-row AR(1) random-intercept fit (issue 12: under 20 s and 4 GB); separate because it takes a while.
.PHONY: bench-distributed
bench-distributed: install
	$(PIN_BLAS) $(BIN)/python bench/bench_distributed.py

.PHONY: bench-scale
bench-scale: install
	$(PIN_BLAS) $(BIN)/python bench/bench_ar1_scale.py

# Crossed GLMMs by the joint Laplace engine (issue 14): peers, 100k and 1M simulated responses, nested old vs new.
.PHONY: bench-crossed
bench-crossed: install
	$(PIN_BLAS) $(BIN)/python bench/bench_crossed.py

# Mutation check (minutes; not part of `make test`): every curated mutant in tools/mutants.yaml must be killed.
.PHONY: mutate
mutate: install
	$(PIN_BLAS) $(BIN)/python tools/mutate.py -j 2

schema: install
	$(BIN)/python -m mlmrun.spec.schema mlmrun/spec/mlmrun.schema.json schemas/mlmrun.schema.json

lint: install
	$(BIN)/ruff check mlmrun tests bench tools

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .bench .fuzz
