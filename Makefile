# Two commands do all the set-up on a fresh machine (only python3 >= 3.11 and make needed):
#   make demo   - a whole simulated hamlet on embedded defaults, dashboard in the browser
#   make test   - the whole test suite
# Flags pass through: make demo ARGS="--port 9000 --minutes 5", make test ARGS="-k serial".

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: demo test lint format bench clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   run a simulated hamlet end to end (dashboard URL printed)"
	@echo "make test   run the whole test suite"
	@echo "make lint   ruff + mypy --strict"
	@echo "make bench  run the benchmarks and print one table"

# The venv is rebuilt when the dependency declarations change. constraints.txt pins every
# package (the lock), so a fresh machine gets exactly what CI tested.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found " + sys.version.split()[0] + "); install python3.11.")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "Could not create a virtualenv: on Debian/Raspberry Pi OS run 'sudo apt-get install python3-venv' and retry."; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hamlet demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
