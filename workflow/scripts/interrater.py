"""Inter-rater reliability tables of the observer ratings (see alliance.interrater_steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.interrater.steps import write_interrater  # noqa: E402

write_interrater(snakemake.input.administrations, snakemake.input.scores, snakemake.config,
                 {name: snakemake.output[name] for name in ("icc", "agreement", "leniency", "pairs")})
