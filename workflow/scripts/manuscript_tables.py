"""APA tables (Markdown, LaTeX), one HTML page and one Word document of them (see alliance.manuscript)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from pathlib import Path  # noqa: E402

from alliance.manuscript import write_manuscript_tables  # noqa: E402

# The tables sit beside the Word document (results/tables/); the check below holds them to the rule.
written = write_manuscript_tables(snakemake.input.scores, snakemake.input.clients, snakemake.input.consistency,
                                  snakemake.input.fits, snakemake.config, Path(snakemake.output.docx).parent,
                                  snakemake.output.docx)
expected = {*snakemake.output.markdown, *snakemake.output.latex, snakemake.output.html, snakemake.output.docx}
unexpected = sorted({str(p) for p in written.values()} ^ expected)
if unexpected:
    raise ValueError(f"manuscript tables: written and declared outputs differ: {unexpected}")
