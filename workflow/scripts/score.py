"""Score every administration with the configured instrument keys (see alliance.scoring)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.scoring.steps import score_study  # noqa: E402

score_study(snakemake.input.administrations, snakemake.config, snakemake.output.parquet, snakemake.output.csv,
            snakemake.output.analysis)
