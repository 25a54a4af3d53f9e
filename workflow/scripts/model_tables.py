"""All models' fixed effects, fit statistics with warnings, and APA tables (see alliance.model_workflow)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_model_tables  # noqa: E402

write_model_tables(snakemake.input.fits, snakemake.output.fixed, snakemake.output.fit, snakemake.output.markdown)
