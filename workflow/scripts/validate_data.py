"""Validate the study tables against the data contract (see alliance.validate)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.data.steps import run_validation  # noqa: E402
from alliance.outputs import write_json  # noqa: E402

write_json(run_validation(snakemake.config), snakemake.output[0])
