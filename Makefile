# Two commands do all set-up on a fresh machine (only python3.11 and make needed):
#   make demo   - venv, install, sandbox simulators on 127.0.0.1, `dagster dev` with sensors running
#   make test   - venv, install, the whole suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The embedded instance lives in a gitignored folder; `dagster dev` only reads a dagster.yaml found
# in DAGSTER_HOME, so the root one is linked there on purpose.
export DAGSTER_HOME := $(CURDIR)/.dagster
export ML_CONNECTOR_HOME := $(CURDIR)/.dagster

.PHONY: install demo sync test lint sandbox webhooks bench bench-latency clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ml-connector demo

sync: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ml-connector sync

sandbox: install
	$(BIN)/ml-connector sandbox serve

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every scenario of bench/ (BENCH_ARGS=--quick for small sizes), then the webhook latency when its
# target exists; the figures go to docs/benchmarks.md.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)
	@if grep -q '^bench-latency:' $(firstword $(MAKEFILE_LIST)); then $(MAKE) --no-print-directory bench-latency; fi

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# Webhook -> destination latency on the embedded instance (starts and stops its own demo stack).
# Every webhook-driven path, one after another (LATENCY_FLOWS=visma_jira for one of them).
LATENCY_FLOWS ?= visma_jira visma_asana visma_monday visma_asana_return visma_monday_receipts acumatica_jira acumatica_release
bench-latency: install
	@for flow in $(LATENCY_FLOWS); do $(BIN)/python -m bench.webhook_latency --flow $$flow $(LATENCY_ARGS) || exit 1; done

lint: install
	$(BIN)/ruff check ml_connector_dagster ml_connector_dagster_tests bench

clean:
	rm -rf $(VENV) .dagster .pytest_cache .hypothesis
