"""Refuse raw files that hold a direct identifier (see alliance.deid)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.data.steps import run_gate  # noqa: E402
from alliance.outputs import write_json  # noqa: E402

write_json(run_gate(snakemake.config), snakemake.output[0])
