"""One batch of cluster bootstrap replicates (see alliance.models.steps.run_bootstrap_batch)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import run_bootstrap_batch  # noqa: E402

run_bootstrap_batch(snakemake.input.data, snakemake.input.fit, int(snakemake.wildcards.batch), snakemake.config,
                    snakemake.output[0])
