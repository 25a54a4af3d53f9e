"""Caterpillar plot of the therapists' random intercepts, without ids (see alliance.model_workflow)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_caterpillar_figure  # noqa: E402

write_caterpillar_figure(snakemake.input.effects, snakemake.output[0], snakemake.output.caption, snakemake.config)
