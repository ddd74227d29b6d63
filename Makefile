# Finetune Studio: the two set-up commands of the README, plus helpers.
#   make run    - create .venv, install the app, start the GUI on the embedded demo
#   make test   - create .venv, install the app and dev tools, run every test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned so pip never resolves a different (multi-GB) build
# behind our back. On Linux PyPI's torch==2.13.0 is the CUDA build; on a CPU-only box the
# local wheelhouse/index may provide the +cpu build. Override: make run TORCH_SPEC=torch==2.11.0
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: run test lint demo screenshot package clean

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(VENV)/bin/finetune-studio --demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check engine gui tests bench packaging
	$(VENV)/bin/lint-imports

screenshot: $(STAMP)
	$(VENV)/bin/finetune-studio --screenshot docs/img/main-window.png

demo: $(STAMP)
	$(PY) -m engine.demo --rebuild

package: $(STAMP)
	$(MAKE) -C packaging package

clean:
	rm -rf $(VENV) build dist *.egg-info
