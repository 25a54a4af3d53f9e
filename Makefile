# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2

.PHONY: run test venv report lint clean benchmark power recovery example-hashes

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml --report results/report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Targets outside the default run (the target must come before --configfile, which takes a list).
power: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) power --configfile config/config.yaml

recovery: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) validate_recovery --configfile config/config.yaml

lint: $(STAMP)
	$(BIN)/snakemake --lint

benchmark: $(STAMP)
	$(BIN)/python benchmarks/lmm_scaling.py
	$(BIN)/python benchmarks/interrater_icc.py
	$(BIN)/python benchmarks/rom_scale.py

clean:
	rm -rf results logs .snakemake

# After `make run`: record the bundled example's result hashes (tests/test_example_results.py
# compares every run with them). Only when results change on purpose; say why in the commit.
example-hashes: $(STAMP)
	cd results && find . -type f ! -name report.html ! -name provenance.json ! -name provenance.html | LC_ALL=C sort \
		| xargs sha256sum > ../tests/data/example_results.sha256

# Optional: JupyterLab for notebooks/ (the percent-format .py files open as notebooks through
# jupytext, already in the venv). Installed once from requirements-notebook.txt; the venv's
# own pins stay as requirements.lock has them.
.PHONY: notebook
NOTEBOOK_STAMP := $(VENV)/.notebook-installed

$(NOTEBOOK_STAMP): requirements-notebook.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-notebook.txt -c requirements.lock
	touch $(NOTEBOOK_STAMP)

notebook: $(NOTEBOOK_STAMP)
	$(BIN)/jupyter lab
