"""Fit one declared dynamic within-person model (RI-CLPM; see alliance.models.steps.run_dynamic_model)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import run_dynamic_model  # noqa: E402

run_dynamic_model(snakemake.input.scores, snakemake.wildcards.name, snakemake.config,
                  snakemake.output.estimates.rsplit("/", 1)[0])
