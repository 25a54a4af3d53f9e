"""`alliance validate` on a large generated CSV: wall time, CPU time and peak memory.

Writes a seeded client-forms table shaped like the bundled example's (client and therapist ids,
session, days since intake, WAI-SR, PHQ-9, GAD-7 and OQ-45 items; 4% of the items empty, the
OQ-45 every sixth session only), about 120 bytes a row, so that ``--rows 1660000`` gives a 200 MB CSV; and a config naming it with the
example's instruments. Then ``alliance validate`` runs on it in a child process under
``/usr/bin/time -v`` (wall, user + system CPU, maximum resident set size), once for each
``--scale`` (1 = ``--rows``; 2 and 4 show whether time grows linearly and memory stays flat).

Target (issue 18): 200 MB in at most 60 s and 2 GB on this 2-core machine. The machine is
shared: the load average (``uptime``) is printed beside every measurement.

Measured (2026-12-05, this machine, load average about 0.7; peak RSS varies by +-60 MiB between runs):

| scale | rows | CSV MB | wall s | CPU s | peak RSS MiB |
| --- | --- | --- | --- | --- | --- |
| 1, before (every cell a Python string) | 1,660,000 | 214 | 67.1 | 65.3 | 4,442 |
| 1 | 1,660,000 | 214 | 13.5 | 13.9 | 685-763 |
| 2 | 3,320,000 | 427 | 26.8 | 27.3 | 1,258 |
| 4 | 6,640,000 | 854 | 59.7 | 60.2 | 2,107 |

Time is linear in the file size. Memory is not flat: reading keeps the mapped columns as
dictionary codes (about 85 bytes a row here) and the study-wide steps (the gate's distinct-value
scan, duplicate administrations, ambiguous ids, therapist switches) each build temporary columns
of about 120 bytes a row.

usage: python benchmarks/validate_large.py [--rows 1660000] [--scale 1 2 4] [--seed 18]
                                           [--workdir DIR] [--keep] [--src SRC]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTS = {"wai_sr": ("wai", 12, 1, 5), "phq9": ("phq", 9, 0, 3), "gad7": ("gad", 7, 0, 3),
               "oq45": ("oq", 45, 0, 4)}
MISSING = 0.04
BLOCK_ROWS = 200_000  # rows generated and written at a time: the generator's memory stays small


def _block(rng: np.random.Generator, first_client: int, n_rows: int, therapists: int):
    """Exactly ``n_rows`` rows of clients with 6 to 18 sessions each (the last one cut short)."""
    import pyarrow as pa

    sessions = rng.integers(6, 19, size=n_rows // 6 + 1)
    n_clients = int(np.searchsorted(np.cumsum(sessions), n_rows)) + 1
    sessions = sessions[:n_clients]
    sessions[-1] -= int(sessions.sum()) - n_rows
    client = np.repeat(np.arange(first_client, first_client + n_clients), sessions)
    session = np.arange(n_rows) - np.repeat(np.cumsum(sessions) - sessions, sessions) + 1
    therapist = (client * 7919) % therapists  # every client keeps one therapist
    days = (session - 1) * 7 + rng.integers(0, 4, size=n_rows)
    days[session == 1] = 0
    columns = {
        "client_id": pa.array(np.char.add("C", np.char.zfill(client.astype(str), 6))),
        "therapist_id": pa.array(np.char.add("TH", np.char.zfill(therapist.astype(str), 4))),
        "session": pa.array(session.astype(np.int16)),
        "days_since_intake": pa.array(days.astype(np.int16)),
    }
    long_form = session % 6 == 1  # the OQ-45 every sixth session, as in the bundled example
    for prefix, n_items, lo, hi in INSTRUMENTS.values():
        for i in range(1, n_items + 1):
            values = rng.integers(lo, hi + 1, size=n_rows).astype(np.int8)
            missing = rng.random(n_rows) < MISSING
            columns[f"{prefix}{i}"] = pa.array(values, mask=missing | (~long_form if prefix == "oq" else False))
    return pa.table(columns), n_clients


def write_csv(path: Path, rows: int, seed: int, therapists: int = 5000) -> int:
    """Write the table (seeded: the same arguments give the same bytes); its row count."""
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    written, first_client, writer = 0, 0, None
    try:
        while written < rows:
            table, n_clients = _block(rng, first_client, min(BLOCK_ROWS, rows - written), therapists)
            if writer is None:
                writer = pcsv.CSVWriter(path, table.schema, write_options=pcsv.WriteOptions(quoting_style="none"))
            writer.write_table(table)
            written += table.num_rows
            first_client += n_clients
    finally:
        if writer is not None:
            writer.close()
    return written


def write_config(path: Path, data: Path) -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["tables"] = {"client_forms": {"path": str(data), "respondent": "client"}}
    config["instruments"] = {entry: {"key": entry, "table": "client_forms", "items": prefix + "{n}"}
                             for entry, (prefix, *_rest) in INSTRUMENTS.items()}
    config.pop("clients", None)
    config["pseudonymisation"]["key_file"] = str(ROOT / "config" / "demo-id-key.txt")
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def measure(config: Path, src: Path) -> dict:
    """Run ``alliance validate`` under /usr/bin/time -v; wall, CPU, peak RSS and exit code."""
    env = dict(os.environ, PYTHONPATH=str(src), ALLIANCE_WORKFLOW_ROOT=str(ROOT))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "alliance.cli", "validate", str(config)]
    before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    stats = dict(re.findall(r"^\s*(.+?): (.+)$", proc.stderr, re.MULTILINE))
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
    return {"wall_s": wall, "cpu_s": float(stats.get("User time (seconds)", "nan"))
            + float(stats.get("System time (seconds)", "nan")),
            "peak_mib": int(stats.get("Maximum resident set size (kbytes)", "0")) / 1024,
            "exit": proc.returncode, "load_before": before, "stdout": proc.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_660_000, help="rows at scale 1")
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the alliance source to measure (another checkout's, for a before/after)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="validate_large_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print("| scale | rows | CSV MB | wall s | CPU s | peak RSS MiB | exit | load (1, 5, 15 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for scale in args.scale:
            data = workdir / f"client_forms_x{scale}.csv"
            if not data.exists():
                rows = write_csv(data, args.rows * scale, args.seed + scale)
            else:
                rows = sum(1 for _ in data.open("rb")) - 1
            config = workdir / f"config_x{scale}.yaml"
            write_config(config, data)
            got = measure(config, args.src)
            load_avg = ", ".join(f"{x:.2f}" for x in got["load_before"])
            print(f"| {scale} | {rows:,} | {data.stat().st_size / 1e6:.0f} | {got['wall_s']:.1f} | "
                  f"{got['cpu_s']:.1f} | {got['peak_mib']:,.0f} | {got['exit']} | {load_avg} |", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
