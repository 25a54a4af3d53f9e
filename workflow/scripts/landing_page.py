"""The report's landing page from the run's results (see alliance.landing.write_landing_page)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.landing import write_landing_page  # noqa: E402

write_landing_page(snakemake.config, snakemake.input.summary, snakemake.input.fits,
                   snakemake.input.get("interrater"), snakemake.input.description, snakemake.output[0],
                   snakemake.input.get("diagnostics", []))
