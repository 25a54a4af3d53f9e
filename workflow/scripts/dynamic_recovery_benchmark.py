"""The committed dynamic-recovery benchmark's table (see alliance.models.steps.write_dynamic_benchmark)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.models.steps import write_dynamic_benchmark  # noqa: E402

write_dynamic_benchmark(snakemake.input.benchmark, snakemake.output[0])
