"""Write the pseudonymisation key's fingerprint (never the key; see alliance.keys)."""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.outputs import atomic_path  # noqa: E402

with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(snakemake.params.fingerprint + "\n", encoding="utf-8")
