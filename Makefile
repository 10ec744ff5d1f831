# The two set-up commands of the README:
#   make demo   installs the host tools and runs the main job
#   make test   installs everything and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
PY     := $(VENV)/bin/python
DEMO   ?= data/demo

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[runtime,host,tflite,dev]"
	touch $@

# Main job (grows with the issues): synthetic talking-face data and its preview.
demo: $(VENV)/.installed
	$(VENV)/bin/tsd data synth --config configs/data/synth-demo.yaml --out $(DEMO)
	$(VENV)/bin/tsd data preview --data $(DEMO) --out $(DEMO)/preview

# pytest exits 5 when it collects no test; that is not a failure of the set-up.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

bench: $(VENV)/.installed
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-enable -q

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
