"""Alpha (95% CI), omega total and item-total correlations (see alliance.psychometrics)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.scoring.steps import write_internal_consistency  # noqa: E402

write_internal_consistency(snakemake.input.administrations, snakemake.config, snakemake.output[0],
                           sessions=tuple(snakemake.params.sessions), n_boot=snakemake.params.n_boot)
