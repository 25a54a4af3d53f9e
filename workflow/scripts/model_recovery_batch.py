"""One batch of simulated studies of the parameter-recovery study (see alliance.model_workflow)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import run_recovery_batch  # noqa: E402

run_recovery_batch(snakemake.config, int(snakemake.wildcards.batch), snakemake.output[0])
