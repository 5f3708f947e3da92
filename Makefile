# The two commands that matter: `make run` (the whole system) and `make test` (the whole suite).
# Both build .venv from the pinned requirements on first use, using only the machine's python3.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) scripts/devrun.py

CLIENTS := tests/clients
CLIENTS_STAMP := $(CLIENTS)/node_modules/.installed

# The seed's client library (axios), pinned by the lockfile, for the real-client tests.
$(CLIENTS_STAMP): $(CLIENTS)/package-lock.json
	npm ci --prefix $(CLIENTS) --no-audit --no-fund --loglevel=error
	touch $(CLIENTS_STAMP)

# The tests run promtool, Prometheus, nginx, Chromium and Node: Debian packages, installed if
# missing; then axios from npm.
test: $(STAMP)
	sh scripts/install_test_tools.sh
	$(MAKE) --no-print-directory $(CLIENTS_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The tests that need real seconds by nature (pytest -m slow; each says why); CI runs them too.
.PHONY: test-slow
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check api queue_worker supervisor runtime tests scripts loadtests deploy
	$(VENV)/bin/ruff format --check api queue_worker supervisor runtime tests scripts loadtests deploy
	$(VENV)/bin/mypy

# The whole suite (loadtests/bench.py); its JSON keeps queue_bench.py's figures under their names.
bench: $(STAMP)
	$(PY) loadtests/bench.py $(BENCH_ARGS)

chaos: $(STAMP)
	$(PY) loadtests/chaos.py $(CHAOS_ARGS)

# The dashboard's pictures in docs/images, taken by its browser test in headless Chromium.
.PHONY: screenshots
screenshots: $(STAMP)
	sh scripts/install_test_tools.sh
	DASHBOARD_SCREENSHOTS=docs/images $(PY) -m pytest -q tests/pages/test_admin_dashboard.py -k every_page_renders

# Headless Locust run against a locally started stack; thresholds decide the exit code.
.PHONY: loadtest
loadtest: $(STAMP)
	$(PY) loadtests/loadtest.py $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
