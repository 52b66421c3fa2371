# Everything installs into a project-local virtualenv, so a fresh machine
# needs only python3 (with venv) and network access to PyPI.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-localstack localstack lint bench bench-peers soak clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tests.harness.demo

test: $(STAMP)
	$(PY) -m pytest -q

# LocalStack, a second SQS/SNS/S3 implementation, in a virtualenv of its own
# so its pins never touch Sesshu's (tests/harness/localstack.py explains why).
# The same end-to-end, fault and operations tests run against it.
LS_VENV  := .venv-localstack
LS_STAMP := $(LS_VENV)/.installed-stamp
LS_TESTS := tests/test_bus_server.py tests/test_daemon_e2e.py tests/test_faults.py \
            tests/test_operations.py tests/test_opcli.py

localstack: $(LS_STAMP)

$(LS_STAMP): tests/localstack-requirements.txt tests/localstack-constraints.txt
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet -r tests/localstack-requirements.txt \
		-c tests/localstack-constraints.txt
	touch $(LS_STAMP)

test-localstack: $(STAMP) $(LS_STAMP)
	SESSHU_TEST_SERVER=localstack $(PY) -m pytest -q $(LS_TESTS)

# The soak run is kept out of the default test run (see README, Reliability).
soak: $(STAMP)
	$(PY) -m tests.soak

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(LS_STAMP)
	$(PY) -m bench.run

bench-peers: $(BENCH_STAMP) $(LS_STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench,peers]'
	$(PY) -m bench.run --peers

lint: $(STAMP)
	$(VENV)/bin/ruff check sesshu plugins tests bench
	$(VENV)/bin/mypy sesshu plugins

clean:
	rm -rf $(VENV) $(LS_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .demo
