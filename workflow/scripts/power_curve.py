"""Gather the power batches into power curves (see alliance.power)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_power_curve  # noqa: E402

write_power_curve(list(snakemake.input), snakemake.config, snakemake.output.results, snakemake.output.curve,
                  snakemake.output.figure)
