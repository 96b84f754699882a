# One command each on a fresh machine: `make run` (the default sweep + its report) and `make test` (what CI
# runs). Both are idempotent: the venv is rebuilt only when pyproject.toml changes, Debian packages
# (the data, Chromium for the UI test, PostgreSQL for the cluster test) are installed only when missing.
SHELL := /bin/bash
PYTHON ?= python3
# GPU=1: TensorFlow and JAX with CUDA (the `gpu` extra) in a venv of their own; otherwise the CPU builds.
GPU ?=
EXTRAS := $(if $(GPU),gpu,cpu),dev
VENV ?= $(if $(GPU),.venv-gpu,.venv)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# $(call apt_install,PACKAGE): as root or with password-less sudo; otherwise it says what to install.
apt_install = if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian package $(1)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "Installing Debian package $(1) (sudo)"; \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	else echo "Please install the Debian package $(1): apt-get install $(1)"; fi

.PHONY: setup data browser postgres run report test test-fast lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST: found on the search path, or Debian's dataset-fashion-mnist.
data: setup
	@$(PY) -m mixup_sweeps.data >/dev/null 2>&1 || { $(call apt_install,dataset-fashion-mnist); }
	@$(PY) -m mixup_sweeps.data

# Debian's Chromium for the MLflow UI test (Playwright drives it; it downloads no browser).
browser:
	@[ -x /usr/bin/chromium ] || { $(call apt_install,chromium); }
	@[ -x /usr/bin/chromium ]

# Debian's PostgreSQL server programs for the cluster test (it starts its own throw-away server on loopback).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(call apt_install,postgresql); }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1

run: data
	$(PY) -m mixup_sweeps.run -m experiment=default_sweep; status=$$?; \
	$(PY) -m mixup_sweeps.report; exit $$status

report: setup
	$(PY) -m mixup_sweeps.report

# The suite runs with a throw-away HOME and without per-user settings, as on a user's fresh machine: a file
# left in ~/.ray, ~/.keras, ~/.cache or ~/.config by earlier work can then not make a test pass that would
# fail there. A test that needs such a file makes it. PYTEST_ARGS passes options through (e.g. -m "not slow").
# TEST_WORKERS pytest-xdist processes, one test file each at a time (a file's module fixtures stay in one): four
# on two cores, since the end-to-end tests wait on processes, servers and files part of the time (2026-12-06, the
# working tree: three workers 14 min 31 s, four 12 min 22 s; docs/speed.md).
TEST_WORKERS ?= 4
FRESH_ENV := -u XDG_CONFIG_HOME -u XDG_CACHE_HOME -u XDG_DATA_HOME -u XDG_STATE_HOME -u KERAS_HOME \
	-u MPLCONFIGDIR -u RAY_ADDRESS -u RAY_AUTH_MODE -u RAY_AUTH_TOKEN -u RAY_AUTH_TOKEN_PATH -u MLFLOW_TRACKING_URI

test: data browser postgres
	@home=$$(mktemp -d -t mixup-test-home.XXXXXX); trap 'rm -rf "$$home"' EXIT; \
	echo "HOME=$$home (throw-away) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)"; \
	env $(FRESH_ENV) HOME="$$home" $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The edit loop: tests/unit and tests/integration (everything but tests/e2e, marked slow by its folder), with the
# config fuzzer on 25 generated cases instead of 80. `make test` stays everything. FAST_WORKERS: two on two cores,
# since these tests compute in their own process and wait on nothing (2026-12-06: 2 min 12 s, 253 CPU-s; three
# workers 2 min 27 s, 290 CPU-s: a third worker's imports and warm parents, and the contention).
FAST_WORKERS ?= 2
test-fast:
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-25} $(MAKE) --no-print-directory test TEST_WORKERS=$(FAST_WORKERS) \
	  PYTEST_ARGS='-m "not slow" $(PYTEST_ARGS)'

# ruff (lint and format), mypy, and the layer contract (lint-imports: folders are layers, no import circle;
# settings in pyproject.toml); CI runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .venv .venv-gpu outputs/*/ outputs/mlflow.db
