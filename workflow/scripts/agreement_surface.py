"""Response surface analysis: client and therapist alliance predicting the post score (see alliance.agreement.steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.agreement.steps import write_response_surface  # noqa: E402

write_response_surface(snakemake.input.scores, snakemake.input.change, snakemake.input.clients,
                       snakemake.params.settings, snakemake.params.instruments, snakemake.output.table,
                       snakemake.output.fit, snakemake.output.figure,
                       snakemake.output.caption)
