"""Fit one multiverse specification (see alliance.models.steps.run_specification)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import run_specification  # noqa: E402

run_specification(snakemake.input.data, snakemake.wildcards.spec, snakemake.config, snakemake.output[0])
