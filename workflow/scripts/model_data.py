"""Write every declared model's and specification's dataset (see alliance.models.steps.write_model_datasets)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_model_datasets  # noqa: E402

write_model_datasets(snakemake.input.scores, snakemake.input.clients, snakemake.config,
                     snakemake.output.models, snakemake.output.specifications)
