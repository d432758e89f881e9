# Obdal: `make run` starts the whole stack on embedded defaults; `make test` runs the suite.
# Everything needed is installed by these targets: a pinned uv (from PyPI) syncs the
# locked workspace (uv.lock) into .venv.

# The interpreter's own path, not a pyenv shim's: given a shim, uv recreates .venv on every sync.
PYTHON ?= $(shell $$(command -v python3.11 || command -v python3) -c 'import sys; print(sys.executable)')
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode compiled once at install (~80 s the first time, ~2 s after): with PYTHONDONTWRITEBYTECODE set,
# as on these machines, every process would otherwise compile what it imports (litellm: ~15 s of CPU).
export UV_COMPILE_BYTECODE := 1

.PHONY: install run test test-faults lint typecheck pytest browser fmt lock clean bench

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

install: $(UV)
	$(UV) sync --locked --python "$(PYTHON)"

run: install
	$(VENV)/bin/obdal up

test: install browser lint typecheck pytest

# The widget's tests drive Debian's chromium through Playwright (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	  else \
	    echo "the widget's browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest

# The fault-injection and hostile-input suite alone (also part of `make test`).
test-faults: install
	$(VENV)/bin/pytest tests/faults

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: $(UV)
	$(UV) lock --python "$(PYTHON)"

# The streaming benchmark (docs/performance.md): the bench group, plus the LiteLLM proxy peer in a venv
# of its own, since the locked litellm's [proxy] extra needs litellm-enterprise/litellm-proxy builds missing
# from the index; BENCH_ARGS=--quick for the short run.
LITELLM_PROXY := $(TOOLS)/litellm-proxy
LITELLM_PROXY_VERSION := 1.108.0
bench: $(UV)
	$(UV) sync --locked --group bench --python "$(PYTHON)"
	@test -x $(LITELLM_PROXY)/bin/litellm || { $(PYTHON) -m venv $(LITELLM_PROXY) && \
	  $(LITELLM_PROXY)/bin/pip install --quiet "litellm[proxy]==$(LITELLM_PROXY_VERSION)"; }
	$(VENV)/bin/python bench/stream.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
