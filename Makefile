# Obdal: `make run` starts the whole stack on embedded defaults; `make test` runs the suite.
# Everything needed is installed by these targets: a pinned uv (from PyPI) syncs the
# locked workspace (uv.lock) into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test test-faults lint typecheck pytest browser fmt lock clean

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

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
