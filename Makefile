# Set-up on a fresh machine: `make demo` and `make test` create .venv and install nvcodec into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nvcodec demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/nvcodec bench rd ../shared/media/bigbuckbunny.mp4 --frames 16 --crop 512x512 --out bench-out/rd

clean:
	rm -rf $(VENV) build *.egg-info demo-out bench-out
