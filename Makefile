# The two commands a newcomer needs: `make demo` (set up + run the default job) and `make test`.
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.honed-installed

$(VENV)/.honed-installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

demo: setup
	$(BIN)/honed train recipes/quickstart.yaml --overwrite

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal

lint: setup
	$(BIN)/ruff check honed tests bench scripts

bench: setup
	$(BIN)/python bench/throughput.py --write

clean:
	rm -rf runs .pytest_cache
