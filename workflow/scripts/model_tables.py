"""All models' fixed effects and fit statistics with warnings (CSV, alliance.models.steps), and the
models side by side as Markdown and HTML with the manuscript's table numbers (alliance.manuscript)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.manuscript import write_model_tables_documents  # noqa: E402
from alliance.models.steps import write_model_tables  # noqa: E402

write_model_tables(snakemake.input.fits, snakemake.output.fixed, snakemake.output.fit)
write_model_tables_documents(snakemake.config, snakemake.input.fits, snakemake.output.markdown, snakemake.output.html)
