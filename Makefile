# The two set-up commands of the README:
#   make demo   installs the host tools and runs the main job
#   make test   installs everything and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
PY     := $(VENV)/bin/python
DEMO   ?= data/demo

RUNS   ?= runs
TSD    := $(VENV)/bin/tsd

.PHONY: demo test bench clean train-demo

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

# The full demo pipeline on CPU (hours; every stage resumes where it stopped when re-run).
train-demo: $(VENV)/.installed
	$(TSD) data synth --config configs/data/synth-demo.yaml --out $(DEMO)
	for t in ae idenc sync lipread visemes teacher student; do \
	  $(TSD) train $$t --config configs/train/$$t.yaml --data $(DEMO) --out $(RUNS)/$$t || exit 1; \
	done
	$(TSD) calibrate schedules --student $(RUNS)/student/final.pt --data $(DEMO)
	$(TSD) eval --student $(RUNS)/student/final.pt --data $(DEMO) --out $(RUNS)/eval \
	  --sync $(RUNS)/sync/final.pt --lipread $(RUNS)/lipread/final.pt
	$(TSD) export --student $(RUNS)/student/final.pt --visemes $(RUNS)/visemes/final.pt \
	  --data $(DEMO) --out bundles/demo
	$(TSD) bundle-report --bundle bundles/demo --data $(DEMO) --out $(RUNS)/bundle-report \
	  --lipread $(RUNS)/lipread/final.pt

bench: $(VENV)/.installed
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-enable -q

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
