"""Outcome change on repaired and unrepaired rupture counts, therapist random intercept (see alliance.ruptures.steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.ruptures.steps import write_rupture_outcome  # noqa: E402

write_rupture_outcome(snakemake.input.counts, snakemake.input.change, snakemake.input.clients,
                      snakemake.params.settings, snakemake.output.table, snakemake.output.fit)
