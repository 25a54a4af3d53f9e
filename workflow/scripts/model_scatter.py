"""Early alliance against the client-level outcome (see alliance.model_workflow)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_scatter_figure  # noqa: E402

write_scatter_figure(snakemake.input.data, snakemake.config, snakemake.params.model, snakemake.output[0],
                     snakemake.output.caption)
