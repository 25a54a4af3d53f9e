"""One batch of power-analysis replications (see alliance.power)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_planned_batch  # noqa: E402

write_planned_batch(snakemake.config, snakemake.wildcards.cell, int(snakemake.wildcards.batch), snakemake.output[0])
