# Two commands from a fresh clone:
#   make demo   install with the embedded model and annotate the example dialogue offline
#   make test   install the dev extras and run the whole test suite (what CI runs)
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -c constraints.txt
# llama.cpp is compiled from source: a portable x86-64 build (AVX2, no AVX-512/AMX), because
# a native build on CPUs with AMX crashed with a protection fault in virtual machines here.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: demo test install-dev lint check-python check-compiler check-chromium core-install-check label-studio

# What the system must provide (README, "Set-up"): each check stops with what to install.
check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  "make: Python >= 3.11 is needed; $(PYTHON) is " + sys.version.split()[0] + \
	  ": install a newer one, or run make PYTHON=/path/to/python3.11")'
	@$(PYTHON) -c 'import pathlib, sys, sysconfig; \
	  managed = pathlib.Path(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED").is_file(); \
	  sys.exit("make: $(PYTHON) is the system Python, which pip may not install into: create a virtual " \
	    "environment first (python3 -m venv .venv && . .venv/bin/activate; Debian/Ubuntu package " \
	    "python3-venv), then run make again" if managed and sys.prefix == sys.base_prefix else 0)'

check-compiler: check-python
	@$(PYTHON) -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llama_cpp") is None)' \
	  || { command -v c++ >/dev/null && command -v cmake >/dev/null; } \
	  || { echo "make: llama-cpp-python (the embedded model) compiles from source and needs a C++ compiler" \
	    "and CMake: sudo apt-get install build-essential cmake" >&2; exit 1; }

check-chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	  || { echo "make test: Chromium is missing; tests/test_report.py opens the HTML report in headless" \
	    "Chromium. Install it: sudo apt-get install chromium (Debian), sudo snap install chromium (Ubuntu)" >&2; \
	    exit 1; }

demo: check-compiler
	$(PIP) -e '.[local]'
	llm-annotator annotate examples/data/walnut_street.csv --task emotion_melt --id-column 'Sr No.' --out runs/walnut_street

install-dev: check-compiler
	$(PIP) -e '.[local,report,ser,trust,ray,dev]'

test: check-chromium install-dev label-studio lint
	$(PYTHON) tools/check_pth.py
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check llm_annotator tests benchmarks tools examples
	$(PYTHON) -m mypy
	lint-imports

# Label Studio for tests/test_label_studio.py (the review round trip against a real server),
# in its own virtual environment: its pins (Django and more) would break ours. Made only
# when missing; about a minute and 1 GB from an empty pip cache. The test finds it here.
LABEL_STUDIO_VERSION = 1.23.2
LABEL_STUDIO_VENV = .label-studio
LABEL_STUDIO_MARK = $(LABEL_STUDIO_VENV)/installed-$(LABEL_STUDIO_VERSION)

label-studio: $(LABEL_STUDIO_MARK)

$(LABEL_STUDIO_MARK):
	$(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/python -m pip install -q 'label-studio==$(LABEL_STUDIO_VERSION)'
	touch $@

# The package with no extras, in a fresh virtual environment: annotate, agree, report (CI runs it).
core-install-check:
	PYTHON=$(PYTHON) tools/core_install_check.sh
