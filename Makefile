# One command each for the README: `make search` runs the main job, `make test` runs the suite.
# Both create .venv on first use and install the pinned CPU torch before the project, so pip is
# never tempted to fetch a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
# Plugin packages that live in this repository and are installed (editable) beside automel.
PLUGINS := plugins/automel-ecapa
TEST_WORKERS ?= 2

.PHONY: install search test lint bench clean

$(BIN)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres,onnx]"
	$(BIN)/python -m pip install --quiet $(addprefix -e ,$(PLUGINS))
	touch $@

install: $(BIN)/.installed

search: install
	$(BIN)/automel search $(ARGS)

# Two phases: everything else on one worker per core (pytest-xdist), then the timing- and signal-sensitive
# tests (marker `serial`) alone, so that a loaded machine cannot make them miss their deadlines. Exit code 5
# (nothing collected: ARGS picked tests of one phase only) is no failure.
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not serial" $(ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -p no:xdist -m serial $(ARGS) || [ $$? -eq 5 ]

lint: install
	$(BIN)/ruff check automel tests bench plugins
	$(BIN)/mypy automel $(addsuffix /src,$(PLUGINS))

clean:
	rm -rf $(VENV)
