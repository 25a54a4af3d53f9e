"""Build the tidy, pseudonymised analysis dataset (see alliance.ingest)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.data.steps import run_ingest  # noqa: E402

run_ingest(snakemake.config, snakemake.output.administrations, snakemake.output.clients,
           snakemake.output.switches)
