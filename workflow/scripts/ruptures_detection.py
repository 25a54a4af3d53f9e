"""Precision and recall of the rupture detector against the injected episodes of a simulated
study (see alliance.ruptures.steps.write_rupture_detection)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.ruptures.steps import write_rupture_detection  # noqa: E402

write_rupture_detection(snakemake.input.scores, snakemake.input.truth, snakemake.config, snakemake.output.table)
