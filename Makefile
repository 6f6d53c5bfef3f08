# tsj-lab. On a fresh machine `make bench` and `make test` are the only two commands a
# user types: every target does its own set-up (venv, packages, server binaries).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup db test test-quick test-shuffled test-matrix lint bench bench-large bench-versions report lab clean browser

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(BIN)/python -m tsj_lab.lab.ipython install >/dev/null
	@! git rev-parse --git-dir >/dev/null 2>&1 || $(BIN)/nbstripout --install
	@rm -f $(VENV)/.installed-*; touch $@

# Notebooks run in place (make lab) stay out of commits: git's clean filter drops outputs,
# keeps cell ids (a commit changes only what was edited), and drops language_info, which
# every kernel rewrites (Python's version, codemirror_mode); JupyterLab's saves re-stage a
# notebook whose filtered content is unchanged (tsj_lab.lab.savehook: git status trusts
# the file's size), so a Run All leaves git status clean.
NBSTRIPOUT = "$(abspath $(BIN))/python" -m nbstripout --keep-id --extra-keys metadata.language_info

## setup: venv, pinned packages, and the embedded server's binaries (no-op when done)
setup: $(STAMP)
	@! git rev-parse --git-dir >/dev/null 2>&1 || git config filter.nbstripout.clean '$(NBSTRIPOUT)'
	@$(BIN)/python -m tsj_lab.lab.savehook install >/dev/null
	$(BIN)/tsj db setup

## db: start the embedded TimescaleDB (set TSJ_DATABASE_URL to use your own instead)
db: setup
	$(BIN)/tsj db start

## browser: headless Chromium for the report rendering tests (Debian package)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: chromium missing; run 'sudo apt-get install chromium'" >&2; exit 1; fi; }

## test: lint and types beside the whole suite (unit, integration on the embedded server,
## nbval over notebooks/), on TEST_WORKERS pytest workers with a server instance each; the
## suite waits on servers, kernels and proxies as much as it computes, so 4 on 2 cores
TEST_WORKERS ?= 4
test: setup browser
	@($(LINT)) > .lint.log 2>&1 & lint=$$!; \
	TSJ_NO_PROGRESS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=10 tests notebooks; \
	rc=$$?; wait $$lint || rc=1; cat .lint.log; rm -f .lint.log; exit $$rc

## test-quick: the suite without the tests marked slow (a developer's loop; make test and CI
## run everything)
test-quick: setup
	TSJ_NO_PROGRESS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests

## test-shuffled: tests/ in a random order (pytest-randomly; the seed is printed, and
## RANDOMLY_SEED=N replays one), to show no test depends on another having run first
RANDOMLY_SEED ?= random
test-shuffled: setup
	TSJ_NO_PROGRESS=1 $(BIN)/python -m pytest -o addopts="-ra" -p randomly \
	  --randomly-seed=$(RANDOMLY_SEED) -n $(TEST_WORKERS) tests

## test-matrix: the version-sensitive tests (provisioning, layout, policy proofs,
## migration into compressed chunks, candle checks, history) on the other legs of the
## version matrix: the newest vendored release, and PostgreSQL 17 (each builds its
## TimescaleDB once); every leg also runs their apache-edition tests on Debian's package
## of that PostgreSQL. CI runs it after make test (.ci/run)
MATRIX_TESTS ?= tests/test_embedded.py tests/test_db.py tests/test_schema.py \
  tests/test_layout.py tests/test_policies.py tests/test_migrate.py tests/test_checks.py \
  tests/test_candles.py tests/test_history.py tests/test_versions.py
MATRIX_LEGS ?= TSJ_TIMESCALEDB_VERSION=2.29.2 TSJ_PG_MAJOR=17
test-matrix: setup
	@for leg in $(MATRIX_LEGS); do t0=$$(date +%s); echo "== version matrix leg $$leg"; \
	  env $$leg TSJ_NO_PROGRESS=1 $(BIN)/python -m pytest \
	    -n $(TEST_WORKERS) --dist loadfile $(MATRIX_TESTS) || exit 1; \
	  echo "== version matrix leg $$leg: $$(( $$(date +%s) - t0 )) s"; done

## lint: ruff and mypy, configured in pyproject.toml (part of make test, so of CI)
LINT = $(BIN)/ruff check tsj_lab tests conftest.py && $(BIN)/mypy
lint: $(STAMP)
	$(LINT)

## bench: the main job: server, default data, provisioning, benchmark report in reports/
## (BENCH_ARGS="--quick", "--replace", "-p samples 50"... are passed to tsj bench)
bench: db
	$(BIN)/tsj bench $(BENCH_ARGS)

## bench-large: the same on 30 days x 4 symbols, with latency against table size (long)
bench-large: db
	$(BIN)/tsj bench --large $(BENCH_ARGS)

## bench-versions: production's TimescaleDB (2.24.0) and the newest vendored release on the
## same data and workloads, side by side, into reports/ (builds the newer one once;
## VERSIONS_ARGS="--versions 2.24.0,2.29.2 --days 7" ... are passed to tsj bench-versions)
bench-versions: setup
	$(BIN)/tsj bench-versions $(VERSIONS_ARGS)

## lab: JupyterLab on this environment with the embedded server started; notebooks
## resolve "target"/"source" to it themselves (or to TSJ_DATABASE_URL when set)
LAB_FLAGS ?= --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)
lab: db
	@echo "JupyterLab on notebooks/: open the http://127.0.0.1:...?token=... URL printed below"
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_FLAGS)

## clean: stop the server and remove venv, server files and reports
clean:
	-@test -x $(BIN)/tsj && $(BIN)/tsj db stop
	rm -rf $(VENV) .tsj reports/2* reports/index.html *.egg-info
