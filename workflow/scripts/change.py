"""Reliable and clinically significant change and NHS Talking Therapies outcomes (see alliance.change)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.scoring.steps import change_report  # noqa: E402

change_report(snakemake.input.scores, snakemake.config, snakemake.output.table, snakemake.output.parameters,
              snakemake.output.programme)
