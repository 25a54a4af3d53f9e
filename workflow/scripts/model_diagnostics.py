"""Diagnostics of one declared model: residuals, random-effect QQ, therapist influence (see
alliance.models.steps.write_model_diagnostics)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_model_diagnostics  # noqa: E402

write_model_diagnostics(snakemake.input.data, snakemake.input.fit, snakemake.config, snakemake.output.json,
                        snakemake.output.influence, snakemake.output.figure)
