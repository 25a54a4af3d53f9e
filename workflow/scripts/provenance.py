"""Write results/provenance.json (see alliance.provenance)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.outputs import write_json  # noqa: E402
from alliance.report.provenance import provenance  # noqa: E402

write_json(provenance(snakemake.config, list(snakemake.input.raw) + list(snakemake.input.instrument_keys)),
           snakemake.output[0])
