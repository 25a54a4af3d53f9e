"""Jacobson plots: first against last administration with the reliable-change band and cut-off."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.scoring.figures import jacobson_plot  # noqa: E402
from alliance.scoring.instruments import instrument_labels  # noqa: E402

jacobson_plot(snakemake.input.table, snakemake.input.parameters, snakemake.output[0], instrument_labels(snakemake.config))
