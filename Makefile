# Everything installs into a project-local virtualenv, so a fresh machine
# needs only python3 (with venv) and network access to PyPI.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Every pip install of ours takes its versions from constraints.txt, so a new
# release of a linter, of moto or of boto3 changes nothing until we update the
# pins on purpose (constraints.txt says how).
PIP_CONSTRAINTS ?= -c constraints.txt

.PHONY: install sysvenv host-packages demo test test-localstack localstack lint bench bench-peers soak clean deb deploy-stack

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_CONSTRAINTS) -e '.[test]'
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

$(SYS_STAMP): setup.cfg pyproject.toml constraints.txt
	$(SYSPY) -m venv $(SYSVENV)
	$(SYSVENV)/bin/python -m pip install --quiet --upgrade pip
	$(SYSVENV)/bin/python -m pip install --quiet $(PIP_CONSTRAINTS) .
	chmod -R a+rX $(SYSVENV)
	touch $@

# host-packages installs the Debian packages some tests use (as root; as a
# plain user it names what is missing and those tests skip, saying why).
host-packages:
	@tests/host-packages

test: $(STAMP) host-packages
	@if $(SYSPY) -c 'import ensurepip' 2>/dev/null; then $(MAKE) --no-print-directory sysvenv; \
	else echo "make test: $(SYSPY) has no venv module; the containment tests will skip"; fi
	SESSHU_SYSVENV=$(SYSVENV) $(PY) -m pytest -q

# LocalStack, a second SQS/SNS/S3 implementation, in a virtualenv of its own
# so its pins never touch Sesshu's (tests/harness/localstack.py explains why).
# The same end-to-end, fault and operations tests run against it.
LS_VENV  := .venv-localstack
LS_STAMP := $(LS_VENV)/.installed-stamp
LS_TESTS := tests/test_bus_server.py tests/test_daemon_e2e.py tests/test_faults.py \
            tests/test_operations.py tests/test_ops_cli.py tests/test_dlq.py tests/test_failures_e2e.py \
            tests/test_extended_e2e.py

localstack: $(LS_STAMP)

$(LS_STAMP): tests/localstack-requirements.txt tests/localstack-constraints.txt
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet -r tests/localstack-requirements.txt \
		-c tests/localstack-constraints.txt
	touch $(LS_STAMP)

test-localstack: $(STAMP) $(LS_STAMP)
	SESSHU_TEST_SERVER=localstack $(PY) -m pytest -q $(LS_TESTS)

# The soak run is kept out of the default test run (see docs/reliability.md).
soak: $(STAMP)
	$(PY) -m tests.soak

# The peers extra (Celery) is part of every bench run: the comparison with
# Celery is one of its figures. A new stamp name, so venvs made before that
# get Celery too.
BENCH_STAMP := $(VENV)/.bench-peers-stamp
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet $(PIP_CONSTRAINTS) -e '.[test,bench,peers]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(LS_STAMP)
	$(PY) -m bench.run

bench-peers: bench

lint: $(STAMP)
	$(VENV)/bin/ruff check sesshu plugins tests bench
	$(VENV)/bin/mypy sesshu plugins

# The Debian package, built by packaging/build-deb (README, "Install on a
# host"); rebuilt only when something that goes into it changed.
DEB_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' sesshu/__init__.py)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null || echo unknown)
DEB         := dist/sesshu_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_INPUTS  := $(shell find sesshu plugins etc packaging docs -type f ! -name '*.pyc') setup.cfg pyproject.toml README.md

deb: $(DEB)

$(DEB): $(STAMP) $(DEB_INPUTS)
	packaging/build-deb $@

# Creates or updates the queues, topics and IAM role of
# etc/cloudformation/sesshu.yaml as the stack STACK, and prints its outputs
# (the bus: values for sesshu.yaml). Needs the AWS CLI, and credentials that
# may create IAM roles. More parameters: STACK_PARAMETERS="VisibilityTimeout=120".
AWS   ?= aws
STACK ?= sesshu
deploy-stack:
	$(AWS) cloudformation deploy --stack-name $(STACK) --template-file etc/cloudformation/sesshu.yaml \
		--capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides Name=$(STACK) $(STACK_PARAMETERS)
	$(AWS) cloudformation describe-stacks --stack-name $(STACK) --query 'Stacks[0].Outputs' --output table

clean:
	rm -rf $(VENV) $(LS_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .demo
