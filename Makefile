# Two entry points: `make demo` (the built-in demo) and `make test` (the whole suite).
# Both create a local virtual environment in .venv with the CPU build of torch; the demo installs only what it needs
# (the core + matplotlib), the tests add the extras they exercise (video, web demo, LLM, test tools).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) -e '.[$(EXTRAS)]' $(TORCH_PIN)
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
