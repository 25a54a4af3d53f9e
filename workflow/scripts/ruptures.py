"""Rupture-repair episodes, per-client counts, summary and example trajectories at every threshold
(see alliance.ruptures.steps)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.ruptures.steps import write_rupture_outputs  # noqa: E402

write_rupture_outputs(snakemake.input.scores, snakemake.params.settings, snakemake.output.episodes,
                      snakemake.output.counts, snakemake.output.summary, list(snakemake.output.figures),
                      snakemake.config)
