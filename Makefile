# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install tools run test lint typecheck check bench bench-expiry bench-janitor bench-listing bench-redis-cost clean

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

# The terminal UI test drives `monitor` in a real terminal (tmux). Installed from Debian's
# packages when missing and we may (root with apt-get); otherwise say what is missing.
tools:
	@command -v tmux >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing tmux (Debian package) for the terminal UI test"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >/dev/null; }; \
		else echo "tmux is missing: install it (e.g. 'sudo apt-get install tmux') for tests/test_terminal.py" >&2; fi; }

run: install  ## Redis (unless REDIS_URL is set) + worker + API, in the foreground
	$(PY) -m pocketqueue up

# Three streams of tests (pytest-xdist), each with its own Redis and worker; a file's tests
# stay together. Three on two cores: most tests wait on worker processes rather than
# compute (measured: 360 s against 548 s with two). `make test PYTEST_WORKERS=0` runs
# them in one process.
PYTEST_WORKERS ?= 3

test: install tools  ## the whole suite against a real Redis and a real worker
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

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

bench-redis-cost: install  ## Redis's instructions per job, create/start/finish, under callgrind (about a minute)
	$(PY) bench/redis_cost.py

bench-janitor: install  ## the janitor's Redis cost, 100,000 jobs queued, 1 vs 8 workers (about 7 minutes)
	$(PY) bench/janitor.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
