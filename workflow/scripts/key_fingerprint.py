"""Write the pseudonymisation key's fingerprint (never the key; see alliance.keys).

The key is read again here so that a missing, short or refused key stops the run with its
reason in this step's log.
"""

from alliance.logs import log_to_file

log_to_file(snakemake.log[0])

from alliance.data.keys import study_key_fingerprint  # noqa: E402
from alliance.outputs import atomic_path  # noqa: E402

fingerprint = study_key_fingerprint(snakemake.config)
if fingerprint != snakemake.params.fingerprint:
    raise RuntimeError("the pseudonymisation key changed while the workflow was running; run it again")
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(fingerprint + "\n", encoding="utf-8")
