# One command each for the README: `make search` runs the main job, `make test` runs the suite.
# Both create .venv on first use and install the pinned CPU torch before the project, so pip is
# never tempted to fetch a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
# Plugin packages that live in this repository and are installed (editable) beside automel.
PLUGINS := plugins/automel-ecapa

.PHONY: install search test lint bench clean

$(BIN)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres]"
	$(BIN)/python -m pip install --quiet $(addprefix -e ,$(PLUGINS))
	touch $@

install: $(BIN)/.installed

search: install
	$(BIN)/automel search $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check automel tests bench plugins
	$(BIN)/mypy automel $(addsuffix /src,$(PLUGINS))

clean:
	rm -rf $(VENV)
