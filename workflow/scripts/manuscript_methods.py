"""The generated methods paragraph with its references (see alliance.manuscript.write_methods)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.manuscript import write_methods  # noqa: E402

write_methods(snakemake.input.summary, snakemake.input.fits, snakemake.input.provenance, snakemake.config,
              snakemake.output[0], snakemake.input.get("interrater"))
