"""Routine-outcome-monitoring scale: the whole workflow on about a million sessions.

Generates a study of 100,000 clients in 5,000 therapists (about 1,000,000 client sessions,
PHQ-9, GAD-7 and WAI-SR at every session; the generator's therapist and observer forms too),
runs the default workflow on it with the example's configuration, and reports the wall time
and peak memory of every step (each step logs them; see alliance.logs) and of the whole run.
Then every file under results/ and logs/ is scanned for the raw client, therapist and rater
ids of the generated data.

Targets (issue 8, on a 2-core machine): the whole workflow in under 10 minutes and under 6 GB
peak memory.

With --generate-only the study and its config are written to --workdir and the script stops,
printing the Snakemake command that runs the workflow there, e.g. on a SLURM cluster with
profiles/slurm (README.md, "Running on a cluster"). The workflow needs ALLIANCE_ID_KEY set (the
demo key is refused for data other than the example).

usage: python benchmarks/rom_scale.py [--clients 100000] [--therapists 5000] [--format parquet]
                                      [--workdir DIR] [--keep] [--generate-only]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
RESOURCES = re.compile(r"resources: wall_seconds=([\d.]+) peak_rss_mib=([\d.]+)")


def generate(outdir: Path, clients: int, therapists: int, fmt: str, seed: int) -> dict:
    from alliance import simulate

    started = time.perf_counter()
    design = simulate.SimulationDesign(n_therapists=therapists, n_clients=clients)
    study = simulate.simulate_study(design, seed=seed)
    simulate.write_study(study, outdir, fmt=fmt)
    return {"seconds": time.perf_counter() - started, "client_sessions": len(study.client_forms),
            "therapist_forms": len(study.therapist_forms), "observer_ratings": len(study.observer_ratings)}


def workdir_config(workdir: Path, data: Path, fmt: str) -> Path:
    shutil.copytree(ROOT / "config", workdir / "config", dirs_exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    suffix = "parquet" if fmt == "parquet" else "csv"
    for name, table in config["tables"].items():
        table["path"] = str(data / f"{Path(table['path']).stem}.{suffix}")
    config["clients"]["path"] = str(data / f"clients.{suffix}")
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_workflow(workdir: Path, config: Path, targets: list[str] | None = None, cores: int = 2) -> tuple[float, int]:
    """Run the workflow in ``workdir`` (with ``targets``: only what those files need)."""
    # targets first: --configfile and --quiet take any number of values
    cmd = [str(SNAKEMAKE), *(targets or []), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "--configfile", str(config), "--quiet", "rules"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-6000:], sep="\n", file=sys.stderr)
    return seconds, proc.returncode


def step_table(logs: Path) -> pd.DataFrame:
    rows = []
    for log in sorted(logs.rglob("*.log")):
        found = RESOURCES.findall(log.read_text(errors="replace"))
        if found:
            wall, peak = found[-1]
            rows.append({"step": str(log.relative_to(logs).with_suffix("")), "wall_seconds": float(wall),
                         "peak_rss_mib": float(peak)})
    return pd.DataFrame(rows).sort_values("wall_seconds", ascending=False)


def raw_ids(data: Path) -> set[str]:
    ids = set()
    for path in data.iterdir():
        if path.suffix not in (".csv", ".parquet") or path.stem == "truth":
            continue
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        for col in ("client_id", "therapist_id", "rater_id"):
            if col in frame:
                ids.update(frame[col].dropna().astype(str).str.strip())
    return ids


#: bytes of a text file the id scan reads at a time (the whole scores CSV at once took gigabytes)
SCAN_BLOCK = 1 << 24


def _text_blocks(path: Path):
    """The file's text in blocks that end at a line break, so that no id spans two blocks."""
    carry = b""
    with open(path, "rb") as fh:
        while block := fh.read(SCAN_BLOCK):
            block = carry + block
            cut = block.rfind(b"\n") + 1
            carry = block[cut:]
            if cut:
                yield block[:cut].decode("latin-1")
    if carry:
        yield carry.decode("latin-1")


def _parquet_texts(path: Path):
    """The distinct values of each non-numeric column, one column at a time (numeric columns,
    most of a national study's items, are not read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    for field in pq.read_schema(path):
        if not any(kind(field.type) for kind in numeric):
            column = pd.read_parquet(path, columns=[field.name])[field.name]
            yield " ".join(column.dropna().astype(str).unique())


def scan_for_ids(workdir: Path, ids: set[str]) -> list[tuple[str, str]]:
    """Every (file, id) where a raw id occurs in a result or log file."""
    token = re.compile(r"[A-Za-z_]+\d+")  # raw ids of the generator look like P0417, TH12, coder_A
    coder = re.compile(r"coder_[A-Za-z]+")
    hits = []
    for folder in ("results", "logs"):
        for path in sorted((workdir / folder).rglob("*")):
            if not path.is_file():
                continue
            found: set[str] = set()
            for text in _parquet_texts(path) if path.suffix == ".parquet" else _text_blocks(path):
                found |= (set(token.findall(text)) | set(coder.findall(text))) & ids
            hits += [(str(path.relative_to(workdir)), i) for i in sorted(found)[:3]]
    return hits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--therapists", type=int, default=5_000)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--generate-only", action="store_true",
                        help="write the study and its config to --workdir, print the workflow command and stop")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rom_scale_"))
    data = workdir / "data"
    print(f"work folder: {workdir}")
    made = generate(data, args.clients, args.therapists, args.format, args.seed)
    print(f"generated {made['client_sessions']:,} client sessions, {made['therapist_forms']:,} therapist forms, "
          f"{made['observer_ratings']:,} observer ratings in {made['seconds']:.1f} s ({args.format})")
    config = workdir_config(workdir, data, args.format)
    if args.generate_only:
        print(f"\nrun the workflow there, e.g. on SLURM:\n  {SNAKEMAKE} -s {ROOT / 'Snakefile'} --directory {workdir} "
              f"--configfile {config} --profile {ROOT / 'profiles' / 'slurm'}")
        return 0
    seconds, code = run_workflow(workdir, config)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    steps = step_table(workdir / "logs")
    print(f"\nworkflow: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.1f} s "
          f"(target < 600 s); largest step peak {steps['peak_rss_mib'].max():.0f} MiB, "
          f"largest child process {children:.0f} MiB (target < 6144 MiB)\n")
    print(steps.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    hits = scan_for_ids(workdir, raw_ids(data))
    print(f"\nraw-id scan of results/ and logs/: {len(hits)} hit(s)" + "".join(f"\n  {f}: {i}" for f, i in hits[:20]))
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir)
    return 0 if code == 0 and not hits else 1


if __name__ == "__main__":
    sys.exit(main())
