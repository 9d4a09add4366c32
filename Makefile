# Two entry points: `make demo` (the built-in demo) and `make test` (the whole suite).
# Both create a local virtual environment in .venv; the demo installs only what it needs (the core + matplotlib), the
# tests add the extras they exercise (video, web demo, LLM, test tools).
# torch comes from pip's configured index (on Linux, PyPI's torch wheel is the CUDA build, with several GB of NVIDIA
# libraries). For the CPU-only build, name the index of the CPU wheels; it is passed to pip as --extra-index-url:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		-e '.[$(EXTRAS)]' $(TORCH_PIN)
	touch $@

# The demo skips pip's byte-compilation of every installed file (40 of the 66 s a fresh install took): Python
# compiles just the modules the demo imports, once, on first use.
$(VENV)/.installed-demo: EXTRAS = plot
$(VENV)/.installed-demo: PIP_FLAGS = --no-compile
$(VENV)/.installed-test: EXTRAS = dev,plot,video,demo

demo: $(VENV)/.installed-demo
	$(BIN)/vidmamba demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/scan.py

clean:
	rm -rf $(VENV) runs .pytest_cache
