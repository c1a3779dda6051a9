# Two commands on a fresh machine: `make up` runs the platform, `make test` passes the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test lint deps unit integration e2e clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/tidings up

lint: install
	$(BIN)/ruff check platform operator tests bench
	$(BIN)/ruff format --check platform operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Real servers the tests use: Redis (Debian), Kafka, Cassandra and s3proxy (Maven Central
# jars on the JDK), installed on first use and cached; idempotent. The Kubernetes control
# plane, the real node's kubelet, Prometheus and promtool are built here (cached; after the
# control plane, whose build warms the Go caches) and started by the tests that need them,
# so no test fixture waits for a Go build. The Tidings image
# is built with podman (installed with apt on first use; cold ~2.5 min, then cached by
# the hash of its build context) and run by tests/e2e/test_image.py. Headless Chromium
# (Debian's, apt) renders /docs in tests/integration/test_docs_offline.py.
deps:
	scripts/deps up redis kafka cassandra s3
	scripts/kube build
	scripts/kube node build
	scripts/prometheus build
	scripts/image build
	scripts/chromium ensure

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

# The control-plane tests run last, so the messaging fault tests run without its load.
test: lint deps
	$(BIN)/pytest tests -m "not kube"
	$(BIN)/pytest tests -m kube

clean:
	rm -rf $(VENV) .tidings-data .mypy_cache .ruff_cache .pytest_cache
