"""Sample sizes, completion per instrument and session, and the missingness figure."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.data.steps import write_summary  # noqa: E402

write_summary(snakemake.input.administrations, snakemake.input.clients, snakemake.input.switches,
              snakemake.output.summary, snakemake.output.completion, snakemake.output.figure,
              snakemake.output.caption, snakemake.config)
