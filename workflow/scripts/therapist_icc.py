"""Unconditional therapist ICC of each model's outcome, with its profile-likelihood CI."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_therapist_icc  # noqa: E402

write_therapist_icc(snakemake.input.fits, snakemake.output.table)
