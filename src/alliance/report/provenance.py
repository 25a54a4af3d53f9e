"""Provenance written with the results: input hashes, resolved config, versions, commit, seeds.

No timestamps: two runs on the same inputs, code and environment write identical bytes.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("alliance", "numpy", "scipy", "pandas", "statsmodels", "pingouin", "pandera", "pyarrow",
            "matplotlib", "seaborn", "snakemake", "pyreadstat", "openpyxl", "python-docx", "jsonschema")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names=PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


CODE_ROOT = Path(__file__).resolve().parents[3]  # src/alliance/report/ -> the checkout


def git_commit(root: str | Path = CODE_ROOT) -> dict:
    """The commit of the code that ran, and whether the work tree differed from it."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)

    head = run("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = run("status", "--porcelain", "--untracked-files=no", "--", "src", "workflow", "Snakefile", "config")
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def provenance(config: dict, inputs: list[str], root: str | Path = CODE_ROOT) -> dict:
    """Everything a reviewer needs to know which inputs, settings and code made the results."""
    return {
        "inputs": {str(p): sha256_file(p) for p in sorted(set(inputs))},
        "config": config,
        "seeds": {"study.seed": config["study"]["seed"]},
        "versions": package_versions(),
        "code": git_commit(root),
    }
