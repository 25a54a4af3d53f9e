"""Coverage and relative bias of the recovery study (see alliance.models.steps.summarise_recovery)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import summarise_recovery  # noqa: E402

summarise_recovery(snakemake.input.batches, snakemake.config, snakemake.output.table, snakemake.output.summary,
                   snakemake.input.dynamic)
