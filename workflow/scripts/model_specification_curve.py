"""Gather the multiverse into the specification curve (see alliance.model_workflow)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_specification_curve  # noqa: E402

write_specification_curve(snakemake.input.specifications, snakemake.output.table, snakemake.output.figure,
                          snakemake.config)
