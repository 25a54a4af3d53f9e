"""Command line: ``alliance simulate`` and ``alliance validate``."""

from __future__ import annotations

import argparse
import logging
import sys

from alliance.errors import ConfigError, IdentifierError, InputError


def _simulate(args) -> int:
    from alliance import simulate

    design = simulate.SimulationDesign(n_therapists=args.therapists, n_clients=args.clients)
    study = simulate.simulate_study(design, simulate.SimulationEffects(), seed=args.seed)
    simulate.write_study(study, args.out, fmt=args.format)
    n_sessions = len(study.client_forms)
    print(f"wrote a simulated study to {args.out}: {args.therapists} therapists, {args.clients} clients, "
          f"{n_sessions} client sessions (seed {args.seed})")
    return 0


def _validate(args) -> int:
    from alliance.config import load_config
    from alliance.ingest import read_study, run_gate, run_validation

    config = load_config(args.config)
    run_gate(config)
    report = run_validation(config)
    study = read_study(config)
    print(f"Configuration {args.config}: valid")
    print("De-identification gate: passed (no direct identifiers found)")
    print("Data: valid")
    for name, table in report["tables"].items():
        print(f"  table {name}: {table['file']}, {table['rows']} rows")
    from alliance.validate import column_map

    clients, therapists = set(), set()
    for name, frame in study.frames.items():
        cols = column_map(config["tables"][name])
        clients.update(frame[cols["client_id"]].astype(str).str.strip())
        therapists.update(frame[cols["therapist_id"]].astype(str).str.strip())
    print(f"  {len(therapists)} therapists, {len(clients)} clients")
    for entry, key in report["instruments"].items():
        print(f"  instrument {entry}: key {key}, table {config['instruments'][entry]['table']}")
    for note in report["notes"]:
        print(f"  note: {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alliance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="write a simulated study with its ground truth")
    sim.add_argument("--out", required=True, help="output folder")
    sim.add_argument("--seed", type=int, default=20261129)
    sim.add_argument("--therapists", type=int, default=40)
    sim.add_argument("--clients", type=int, default=400)
    sim.add_argument("--format", choices=["csv", "parquet"], default="csv")
    sim.set_defaults(func=_simulate)
    val = sub.add_parser("validate", help="check the config and the data without running any analysis")
    val.add_argument("config", help="config file, e.g. config/config.yaml")
    val.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, InputError, IdentifierError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
