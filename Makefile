# make demo  — set up .venv and convert + check the bundled fixtures
# make test  — set up .venv (with test extras) and run the test suite
# make bench — set up .venv and run the benchmarks
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first and pinned: this machine carries the CPU wheel of 2.13.0; an unpinned torch pulls a CUDA build
TORCH_PIN ?= torch==2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: demo test bench fixtures clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed-all: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[all]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-all
	$(PIP) install -q -e '.[all,scale,test]'
	touch $@

demo: $(VENV)/.installed-all
	$(PY) fixtures/demo.py

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# the peer pickle scanners live in their own venv: their pins (rich<15, ...) never touch modelport's
PEERS := benchmarks/.data/peers
$(PEERS)/.installed: | $(PY)
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q 'picklescan>=0.0.30' 'modelscan>=0.8' 'fickling>=0.1' typing_extensions  # fickling imports it undeclared
	touch $@

bench: $(VENV)/.installed-test $(PEERS)/.installed
	$(PY) benchmarks/run_all.py

fixtures: $(VENV)/.installed-test
	$(PY) fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
