# Every target bootstraps .venv on first use, so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run check test lint typecheck pytest system-deps bench bench-peers bench-core chaos clean dashboard-screenshot

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m raftq cluster up --config cluster/three-node.toml

lint: $(STAMP)
	$(PY) -m ruff check raftq tests bench examples jepsen-style deploy
	$(PY) -m ruff format --check raftq tests bench examples jepsen-style deploy

typecheck: $(STAMP)
	$(PY) -m mypy

# strace, chromium, iptables, libfaketime: installed when missing (Debian), see .ci/system-deps.
system-deps:
	bash .ci/system-deps

# Two test processes (pytest-xdist): most tests wait on real processes, not on the CPU. A
# test module runs whole in one of them (`loadscope`): the chaos runs, which share the
# namespaces' subnet, one after the other; `PYTEST_WORKERS=0` runs everything in one process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP) system-deps
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope

# The full suite, what CI runs: lint, types, every test (real processes, chaos runs).
test: lint typecheck pytest

# The inner loop: lint, types and the fast tests (unit and in-process; no real processes, no
# chaos runs): a few minutes. RAFTQ_FAST_TIER=1 makes an unmarked test that starts a process
# fail (tests/conftest.py).
check: lint typecheck
	RAFTQ_FAST_TIER=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not integration and not chaos and not slow"

# Refresh the README's screenshot: the dashboard test against a live 3-node cluster, in headless
# Chromium (apt-get install chromium), copying its screenshot to docs/img/dashboard.png.
dashboard-screenshot: $(STAMP) system-deps
	mkdir -p docs/img
	RAFTQ_DASHBOARD_PNG=docs/img/dashboard.png $(PY) -m pytest -q \
		tests/integration/test_observability.py -k dashboard

# The full tier: 3 nodes, every nemesis 60 s each (~20 min); summary in docs/reliability.md.
chaos: $(STAMP) system-deps
	$(PY) jepsen-style/chaos

# A fresh local 3-node cluster (fsync on) under the peers' workload, with the client levers
# off and on (~2-3 minutes; takes /tmp/bench.lock itself). docs/benchmarks.md explains it.
bench: $(STAMP)
	mkdir -p bench/results
	$(PY) -m raftq bench --levers --json bench/results/bench.json

# The same, plus NATS JetStream R3, the RabbitMQ quorum queue and Redis+arq in the same run
# (raftq/bench/peers/ installs them if missing, starts and stops them itself; ~10 minutes).
bench-peers: $(STAMP)
	mkdir -p bench/results
	$(PY) -m raftq bench --levers --peers --fsync-off-row --json bench/results/bench-peers.json

# The state machine alone (raftq/core), no Raft, no network.
bench-core: $(STAMP)
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
