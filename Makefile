# Set-up and the two everyday commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-extras-stamp

.PHONY: demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# the optional TorchScript export is tested where the CPU build of torch 2.13.0 installs
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet torch==2.13.0 \
		|| echo "torch==2.13.0 is not installable here: the TorchScript tests will skip"
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/polyvae demo -o results

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check polyvae tests bench examples

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) results .pytest_cache
