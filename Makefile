# Every target bootstraps .venv on first use, so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench chaos chaos-deps clean dashboard-screenshot

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m raftq cluster up --config cluster/three-node.toml

lint: $(STAMP)
	$(PY) -m ruff check raftq tests bench examples jepsen-style
	$(PY) -m ruff format --check raftq tests bench examples jepsen-style

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest

test: lint typecheck pytest

# Refresh the README's screenshot: the dashboard test against a live 3-node cluster, in headless
# Chromium (apt-get install chromium), copying its screenshot to docs/img/dashboard.png.
dashboard-screenshot: $(STAMP)
	mkdir -p docs/img
	RAFTQ_DASHBOARD_PNG=docs/img/dashboard.png $(PY) -m pytest -q \
		tests/integration/test_observability.py -k dashboard

# The jepsen-style suite needs iptables and libfaketime (Debian); tests/chaos runs inside
# `make test` too, so .ci/run installs them the same way.
FAKETIME_LIB := /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
chaos-deps:
	@(command -v iptables >/dev/null && test -e $(FAKETIME_LIB)) || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq iptables libfaketime faketime)

# The full tier: 3 nodes, every nemesis 60 s each (~20 min); summary in docs/reliability.md.
chaos: $(STAMP) chaos-deps
	$(PY) jepsen-style/chaos

bench: $(STAMP)
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
