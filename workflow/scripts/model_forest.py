"""Forest plot of the alliance effects by level: client-level r-equivalents beside the Flückiger et al. (2018) benchmark."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_forest_plot  # noqa: E402

write_forest_plot(snakemake.input.fits, snakemake.output.figure, snakemake.output.table)
