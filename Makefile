# Two commands for a newcomer: `make lab` and `make test`. Each creates .venv and installs
# what it needs the first time (and again whenever pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test bench notebooks lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lab: $(STAMP)  ## open the workbook in JupyterLab (localhost only, with a token)
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/00-welcome.ipynb

# The kit's core again with pidfd_open and os.waitid hidden (as on macOS with Python 3.11 and
# 3.12), then under every other Python 3.11+ found here (tools/other-pythons; OTHER_PYTHONS=
# none skips them, saying so).
CORE_TESTS := tests/test_exit.py tests/test_run.py tests/test_stream.py tests/test_pipes.py \
	tests/test_terminate.py tests/test_group.py tests/test_pool.py

test: $(STAMP)  ## the whole suite: kit tests on asyncio and trio, then every notebook
	$(BIN)/python -m pytest
	ASYNCPROC_KIT_TEST_HIDE="pidfd_open waitid" ASYNCPROC_KIT_EXIT_STRATEGY=waitid-ctypes \
		$(BIN)/python -m pytest $(CORE_TESTS)
	$(BIN)/python tools/other-pythons

notebooks: $(STAMP)  ## rebuild notebooks from notebooks/src and run them (NB="01 03" for some)
	$(BIN)/python notebooks/build.py $(NB)

bench: $(STAMP)  ## side-by-side benchmarks (not tests): prints medians and ratios
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check asyncproc_kit tests benchmarks notebooks/build.py tools/other-pythons

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts "$${TMPDIR:-/tmp}"/asyncproc-kit-binder-*
