"""Fit one declared alliance-outcome model and write its result files (see alliance.models.steps.run_model)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import run_model  # noqa: E402

run_model(snakemake.input.data, snakemake.wildcards.model, snakemake.config,
          snakemake.output.fixed.rsplit("/", 1)[0], snakemake.output.data)
