"""Client-therapist discrepancy per scale, item and dyad with Bland-Altman limits and plots
(see alliance.agreement_steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.agreement.steps import write_agreement_outputs  # noqa: E402

write_agreement_outputs(snakemake.input.scores, snakemake.input.administrations, snakemake.params.settings,
                        snakemake.params.instruments, snakemake.output.discrepancy, snakemake.output.item_table,
                        snakemake.output.per_dyad, list(snakemake.output.figures))
