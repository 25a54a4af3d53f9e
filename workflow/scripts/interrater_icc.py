"""Inter-rater ICCs of the observer-rated alliance, per scale (see alliance.interrater_steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.interrater_steps import write_interrater_icc  # noqa: E402

write_interrater_icc(snakemake.input.administrations, snakemake.input.scores, snakemake.params.settings,
                     snakemake.params.seed, snakemake.output[0])
