# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install tools run test screenshots lint typecheck check bench bench-dashboard bench-expiry bench-janitor bench-listing bench-redis-cost clean

# Re-installs only when the pins change.
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "PocketQueue needs Python 3.11 or newer; run e.g. 'make PYTHON=python3.12 run'." >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The terminal UI test drives `monitor` in a real terminal (tmux), the browser tests the
# dashboard in a real Chromium. Each is installed from Debian's packages when missing and
# we may (root with apt-get); otherwise say what is missing (the browser tests then skip,
# saying why; the terminal test fails, saying what to install).
tools:
	@for need in tmux:tmux:tests/test_terminal.py chromium:chromium:tests/test_browser.py; do \
		command=$${need%%:*}; rest=$${need#*:}; package=$${rest%%:*}; test=$${rest#*:}; \
		command -v $$command >/dev/null 2>&1 && continue; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing $$package (Debian package) for $$test"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$package >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$package >/dev/null; }; \
		else echo "$$command is missing: install it (e.g. 'sudo apt-get install $$package') for $$test" >&2; fi; \
	done

run: install  ## Redis (unless REDIS_URL is set) + worker + API, in the foreground
	$(PY) -m pocketqueue up

# Three streams of tests (pytest-xdist), each with its own Redis and worker; a file's tests
# stay together. Three on two cores: most tests wait on worker processes rather than
# compute (measured: 360 s against 548 s with two). `make test PYTEST_WORKERS=0` runs
# them in one process.
PYTEST_WORKERS ?= 3

test: install tools  ## the whole suite against a real Redis and a real worker
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The README's dashboard pictures, taken by the browser tests in a real Chromium.
screenshots: install tools
	SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest -p no:randomly tests/test_browser.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

bench: install  ## prints the speed table (takes a few minutes)
	$(PY) bench/run.py

bench-expiry: install  ## 100,000 jobs through Redis and out again (about 9 minutes)
	$(PY) bench/expiry.py

bench-listing: install  ## a filtered page of GET /api/queue/jobs at 100,000 and 1,000,000 jobs (about 15 minutes)
	$(PY) bench/listing.py

bench-dashboard: install tools  ## each dashboard page's requests at 1,000,000 jobs, and 20 idle dashboards' API CPU (about 5 minutes)
	$(PY) bench/dashboard.py

bench-redis-cost: install  ## Redis's instructions per job, create/start/finish, under callgrind (about a minute)
	$(PY) bench/redis_cost.py

bench-janitor: install  ## the janitor's Redis cost, 100,000 jobs queued, 1 vs 8 workers (about 7 minutes)
	$(PY) bench/janitor.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
