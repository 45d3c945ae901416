# Set-up and everyday commands. `make demo` and `make test` each do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The `cpu` extra pins the small CPU build of torch; GPU users: CPU= make test keeps your torch.
CPU ?= cpu,

.PHONY: demo test test-fast lint format docs docs-build clean

# One stamp per extras set: the demo needs no test tools (PySpark alone is ~450 MB).
$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(CPU)$*]"
	touch $@

# The demo installs what the README's tour runs: serving and the ONNX export.
demo: $(VENV)/.installed-serve,export  ## train on the embedded demo data, then predict with the saved model
	$(BIN)/emoclf train --output-dir runs/demo --overwrite
	$(BIN)/emoclf predict --model runs/demo/model "i finally got the job and i cant stop smiling" "why does nobody ever listen to me"

test: $(VENV)/.installed-test  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(VENV)/.installed-test  ## ruff: lint and formatting, as CI checks them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(VENV)/.installed-docs  ## the documentation site at http://127.0.0.1:8000/, rebuilt as you edit
	$(BIN)/mkdocs serve

docs-build: $(VENV)/.installed-docs  ## build the site into site/ as CI does: a broken link or a page left out fails
	$(BIN)/mkdocs build --strict

clean:
	rm -rf runs inspect evaluation audit benchmarks/out mlflow.db mlruns mlartifacts site
