# Set-up and the two everyday commands: `make demo` and `make test`; `make docs` builds the
# documentation, `make wheel-check` runs the demo from the wheel in a fresh environment.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-extras-stamp
DOCS_STAMP := $(VENV)/.docs-extras-stamp

.PHONY: demo test docs wheel-check lint bench clean

# --no-compile: byte-compiling every file of jax, torch and MDAnalysis at install takes longer
# than compiling, on first import, the few that are imported
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -e ".[test]"
	touch $(STAMP)

# the optional TorchScript export is tested where the CPU build of torch 2.13.0 installs, the
# PLUMED export inside the PLUMED that the hillclimber wheel bundles (its own dependencies unneeded)
$(TEST_STAMP): $(STAMP) Makefile
	$(BIN)/python -m pip install --quiet --no-compile torch==2.13.0 \
		|| echo "torch==2.13.0 is not installable here: the TorchScript tests will skip"
	$(BIN)/python -m pip install --quiet --no-deps hillclimber==0.1.8 \
		|| echo "hillclimber==0.1.8 (a PLUMED build) is not installable here: the PLUMED tests will skip"
	touch $(TEST_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

demo: $(STAMP)
	$(BIN)/polyvae demo -o results

test: $(TEST_STAMP)
	$(BIN)/lint-imports setup.cfg --no-cache
	$(BIN)/python -m pytest -q -n auto --dist loadscope

# warnings are errors; pages generated from README.md and the docstrings are rebuilt each time
docs: $(DOCS_STAMP)
	rm -rf docs/_build docs/_autosummary
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "documentation in docs/_build/html/index.html"

# the wheel, installed in a fresh virtual environment outside the repository, runs the demo
wheel-check: $(STAMP)
	bash .ci/wheel_demo.sh $(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check polyvae tests bench examples tools docs

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) results .pytest_cache docs/_build docs/_autosummary docs/_readme
