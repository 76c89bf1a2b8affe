# The two commands of the README: `make book` and `make test`. Each creates .venv first
# (from requirements.txt, again whenever requirements.txt, pyproject.toml or setup.py change).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BNLIB_CACHE_DIR ?= $(CURDIR)/_build/bnlib-cache

.PHONY: book test bench venv browser clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

# The published book: full settings, executed, warnings are errors, a failing cell fails.
book: $(STAMP)
	BNLIB_PROGRESS=0 $(BIN)/python tools/build_book.py

# Unit tests, then a clean build of the whole book in the short setting, checked page by page.
test: $(STAMP) browser
	$(BIN)/python -m pytest

# The browser test drives Debian's chromium; install it when missing and we may (root + apt).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing chromium and chromium-driver for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "chromium/chromedriver missing and not installable here: the browser test will be skipped" \
	         "(install them with: sudo apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

# Each benchmark prints its ratios and writes them to benchmarks/results/, which the book quotes.
bench: $(STAMP)
	@for script in benchmarks/*.py; do \
	  echo "== $$script"; \
	  $(BIN)/python $$script --json benchmarks/results/$$(basename $$script .py).json || exit 1; \
	done

clean:
	rm -rf _build _vendor
