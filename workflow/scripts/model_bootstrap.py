"""Percentile intervals of the cluster bootstrap from all batches (see alliance.model_workflow)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import gather_bootstrap  # noqa: E402

gather_bootstrap(snakemake.input.batches, snakemake.input.fixed, snakemake.config, snakemake.output[0])
