# Everything installs into a project-local virtualenv, so a fresh machine
# needs only python3 (with venv) and network access to PyPI.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install sysvenv demo test lint bench bench-peers soak clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tests.harness.demo

# The containment tests run sesshud as root with workers.user set to an
# unprivileged account, which must be able to read the interpreter and every
# module a worker imports. The default python3 here lives under /root (0700),
# so those tests use a venv on Debian's /usr/bin/python3 in a world-readable
# place; tests/test_containment.py puts the code under test beside it.
SYSPY      ?= /usr/bin/python3
SYSVENV    ?= /var/tmp/sesshu-test-sysvenv
SYS_STAMP  := $(SYSVENV)/.installed-stamp
sysvenv: $(SYS_STAMP)

$(SYS_STAMP): setup.cfg pyproject.toml
	$(SYSPY) -m venv $(SYSVENV)
	$(SYSVENV)/bin/python -m pip install --quiet --upgrade pip
	$(SYSVENV)/bin/python -m pip install --quiet .
	chmod -R a+rX $(SYSVENV)
	touch $@

test: $(STAMP) $(SYS_STAMP)
	SESSHU_SYSVENV=$(SYSVENV) $(PY) -m pytest -q

# The soak run is kept out of the default test run (see README, Reliability).
soak: $(STAMP)
	$(PY) -m tests.soak

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.run

bench-peers: $(BENCH_STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench,peers]'
	$(PY) -m bench.run --peers

lint: $(STAMP)
	$(VENV)/bin/ruff check sesshu plugins tests bench
	$(VENV)/bin/mypy sesshu plugins

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .demo
