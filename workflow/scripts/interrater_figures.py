"""Coder leniency and coder-pair figures of one observer instrument (see alliance.interrater_steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.interrater.steps import write_interrater_figures  # noqa: E402

write_interrater_figures(snakemake.input.administrations, snakemake.input.scores, snakemake.config,
                         snakemake.wildcards.instrument, snakemake.output.leniency, snakemake.output.pairs)
