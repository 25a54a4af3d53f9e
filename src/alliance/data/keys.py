"""The pseudonymisation key: where it comes from, its fingerprint, and the demo key's limits.

The key is read from an environment variable (``pseudonymisation: key_env:``, by default
``ALLIANCE_ID_KEY``) or else from ``pseudonymisation: key_file:``. Either way it must be at
least :data:`MIN_KEY_CHARS` characters long. A variable that is set but empty is an error,
never a silent fall-back to the key file.

The repository ships a public demo key (``config/demo-id-key.txt``) for the bundled, simulated
example. Anyone holding it can recompute the pseudonyms, so it is refused for any input data
other than the example's (checked by the SHA-256 of every file the config reads).

Only the key's :func:`fingerprint` ever reaches ``results/`` (it is an input of the steps that
write pseudonyms, so a new key reruns them); the key itself never does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Iterable

MIN_KEY_CHARS = 16

#: Fingerprint of the shipped demo key (``config/demo-id-key.txt``).
DEMO_KEY_FINGERPRINT = "154c0942bc16e089"

#: SHA-256 of every file the bundled example's config reads (data/raw/example/).
EXAMPLE_INPUT_SHA256 = frozenset({
    "dfc3369ef921e4be7831a3cc4e178a2990c33067b81f666909da79dccd15f303",  # client_forms.csv
    "a7cb78157a9f50f08ecef9bc8f1742faf4b9c5985903def4dec6556760f4ffd2",  # clients.csv
    "455d91dc33589949af09c65d6927172094f8530e852abd53cf734592381286d5",  # observer_ratings.csv
    "d656531da8a8c4d9dade41ae980def4ea78b6c2b87366c72e052015991564583",  # therapist_forms.csv
})

HOW_TO_SET_A_KEY = (
    "Create a key of at least {n} characters, keep it outside the repository and results/, and "
    "set it before running, e.g. `export {env}=$(python -c \"import secrets; "
    "print(secrets.token_hex(24))\")` (or point pseudonymisation: key_file: at a file outside "
    "the repository). Keep the same key for the whole study: a new key gives new pseudonyms."
)


def load_id_key(key_env: str = "ALLIANCE_ID_KEY", key_file: str | os.PathLike | None = None) -> bytes:
    """The pseudonymisation key: the environment variable if it is set, else the key file.

    Parameters
    ----------
    key_env
        Name of the environment variable holding the key.
    key_file
        A file holding the key (lines starting with ``#`` are comments), used when the
        variable is not set at all.

    Returns
    -------
    bytes
        The key, UTF-8 encoded.

    Raises
    ------
    ValueError
        When the variable is set but empty, when the key (from either place) is shorter than
        :data:`MIN_KEY_CHARS` characters, or when there is no key at all. The message never
        holds the key.
    """
    hint = HOW_TO_SET_A_KEY.format(n=MIN_KEY_CHARS, env=key_env)
    if key_env in os.environ:
        value = os.environ[key_env]
        if not value.strip():
            raise ValueError(f"the environment variable {key_env} is set but empty; it is not "
                             f"replaced by the key file. {hint}")
        if len(value) < MIN_KEY_CHARS:
            raise ValueError(f"the pseudonymisation key in ${key_env} has {len(value)} characters; "
                             f"at least {MIN_KEY_CHARS} are needed. {hint}")
        return value.encode("utf-8")
    if key_file:
        path = Path(key_file)
        if not path.exists():
            raise ValueError(f"pseudonymisation key file {path} not found (and ${key_env} is not set)")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        key = "".join(ln for ln in lines if ln and not ln.startswith("#"))
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"pseudonymisation key in {path} is shorter than {MIN_KEY_CHARS} characters")
        return key.encode("utf-8")
    raise ValueError(f"no pseudonymisation key: ${key_env} is not set and the config has no "
                     f"pseudonymisation: key_file:. {hint}")


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of ``key`` (16 hex digits of an HMAC-SHA256), never the key."""
    return hmac.new(key, b"alliance-key-fingerprint", hashlib.sha256).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def refuse_demo_key(key: bytes, input_paths: Iterable[str | os.PathLike], key_env: str = "ALLIANCE_ID_KEY") -> None:
    """Refuse the public demo key for anything but the bundled example's input files.

    Raises
    ------
    ValueError
        When ``key`` is the demo key and some input file's content is not one of the
        example's; the message says how to set a key of one's own.
    """
    if fingerprint(key) != DEMO_KEY_FINGERPRINT:
        return
    foreign = [str(p) for p in input_paths if not Path(p).exists() or file_sha256(p) not in EXAMPLE_INPUT_SHA256]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(
            "the public demo key (config/demo-id-key.txt) is only for the bundled example study, "
            f"and {len(foreign)} input file(s) are not the example's ({shown}): anyone could "
            "recompute these pseudonyms. "
            + HOW_TO_SET_A_KEY.format(n=MIN_KEY_CHARS, env=key_env)
        )


def study_key(config: dict) -> bytes:
    """The key for the study ``config`` describes, after the demo-key check on its input files."""
    from alliance.data.io import input_files

    settings = config.get("pseudonymisation", {})
    key_env = settings.get("key_env", "ALLIANCE_ID_KEY")
    key = load_id_key(key_env, settings.get("key_file"))
    refuse_demo_key(key, input_files(config), key_env)
    return key


def study_key_fingerprint(config: dict) -> str:
    """The fingerprint of :func:`study_key` (raises its errors)."""
    return fingerprint(study_key(config))
