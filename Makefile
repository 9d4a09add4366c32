# Two entry points: `make demo` (the built-in demo) and `make test` (the whole suite).
# Both create a local virtual environment in .venv with the CPU build of torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[dev,plot,video,demo]' $(TORCH_PIN)
	touch $@

demo: $(VENV)/.installed
	$(BIN)/vidmamba demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/scan.py

clean:
	rm -rf $(VENV) runs .pytest_cache
