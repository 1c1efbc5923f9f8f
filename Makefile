# insightdb developer commands. `make demo` tours the reference application, `make test` is the
# test command (the one .ci/run runs). Both create the virtual environment on first use.
#
# Variables (override on the command line: `make test VENV=/tmp/venv-check`):
#   VENV              where the virtual environment lives (default .venv)
#   INSIGHTDB_PYTHON  the interpreter the venv is created with; default: scripts/find-python.sh
#                     picks a Python >= 3.13 (the embedded server needs it)
#   SERVER_ARGS       options of `insightdb server` for `make server`
#   BENCH_ARGS        options of `python -m bench.run` for `make bench` (e.g. --quick)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

VENV ?= .venv
SERVER_ARGS ?=
BENCH_ARGS ?=
PY := $(VENV)/bin/python
# Kubernetes manifests checked by `make lint` (kustomization.yaml has no Kubernetes schema).
K8S_MANIFESTS := $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
# Written after a successful install; rebuilt when pyproject.toml changes, so re-runs are fast.
STAMP := $(VENV)/.insightdb-installed

# INSIGHTDB_PYTHON is read by scripts/find-python.sh only. Keep it out of the recipes' environment:
# insightdb.settings treats every INSIGHTDB_* variable as a setting and would refuse "python".
unexport INSIGHTDB_PYTHON

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help demo serve test lint docs docs-ref bench server clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@if [[ ! -x "$(PY)" ]]; then \
		python="$$(INSIGHTDB_PYTHON='$(INSIGHTDB_PYTHON)' scripts/find-python.sh)"; \
		echo "creating $(VENV) with $$python"; \
		"$$python" -m venv "$(VENV)"; \
	fi
	@"$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 13))' || { \
		echo "$(VENV) runs Python < 3.13; the embedded server needs 3.13+." >&2; \
		echo "Remove it (make distclean) or use another: make VENV=/path/to/venv ..." >&2; \
		exit 1; }
	"$(PY)" -m pip install --quiet --upgrade pip
	@# setuptools prints an informational box for every editable install of a flat layout
	@# ("be careful with folders ... same name as your package"); nothing to act on here.
	PYTHONWARNINGS="ignore:Editable installation" "$(PY)" -m pip install --quiet -e ".[dev]"
	@touch "$@"

demo: $(STAMP) ## start the reference application (examples/) and tour it through its gateway
	"$(PY)" examples/tour.py

serve: $(STAMP) ## run the reference application on 127.0.0.1:8000-8003 until Ctrl-C (PORT=...)
	"$(PY)" examples/serve.py

lint: $(STAMP) ## ruff, mypy (strict), mkdocs build --strict, deploy/ (hadolint, k8s and compose schemas)
	"$(VENV)/bin/ruff" check .
	"$(VENV)/bin/ruff" format --check .
	"$(VENV)/bin/mypy" insightdb tests/typing
	"$(VENV)/bin/lint-imports" --no-cache  # the layering contracts in pyproject.toml
	NO_MKDOCS_2_WARNING=1 "$(VENV)/bin/mkdocs" build --strict --quiet
	@# deploy/: offline checks (the packages carry hadolint and the schemas); the oldest and the
	@# newest Kubernetes release the manifests target. The Secret template is validated too.
	"$(VENV)/bin/hadolint" deploy/Dockerfile
	"$(VENV)/bin/kubernetes-validate" --strict --quiet -k 1.29.0 $(K8S_MANIFESTS)
	"$(VENV)/bin/kubernetes-validate" --strict --quiet -k 1.37.0 $(K8S_MANIFESTS)
	"$(VENV)/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

docs: $(STAMP) ## serve the documentation site on http://127.0.0.1:8000 (mkdocs serve)
	NO_MKDOCS_2_WARNING=1 "$(VENV)/bin/mkdocs" serve

docs-ref: $(STAMP) ## regenerate docs/reference/cli.md and configuration.md from the code
	"$(PY)" scripts/gen_reference.py

test: lint ## lint, then the whole test suite (unit, integration, docs)
	"$(VENV)/bin/pytest"

bench: $(STAMP) ## run bench/ (about 5 min) and regenerate docs/benchmarks.md and .png
	"$(PY)" -m bench.run $(BENCH_ARGS)

server: $(STAMP) ## run the shared development server in the foreground (SERVER_ARGS="--port 27018")
	"$(VENV)/bin/insightdb" server $(SERVER_ARGS)

clean: ## remove caches and build output (keeps the venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist
	find . \( -path ./.git -o -path ./.venv -o -path "./$(VENV)" \) -prune -o \
		-type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## also remove the virtual environment
	rm -rf "$(VENV)"
