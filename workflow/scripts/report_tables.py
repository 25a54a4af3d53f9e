"""The report's HTML page of each result table (see alliance.report.pages.write_pages)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.report.pages import write_pages  # noqa: E402

write_pages(dict(snakemake.input.items()), dict(snakemake.output.items()), snakemake.config,
            dict(snakemake.wildcards.items()))
