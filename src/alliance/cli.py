"""Command line: alliance init, validate, run, report and simulate."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from alliance.errors import ConfigError, IdentifierError, InputError

DESCRIPTION = (
    "Reproducible alliance-outcome studies. Typical use: alliance init DATA_DIR -o my.yaml, "
    "then alliance validate my.yaml, then alliance run my.yaml and alliance report my.yaml."
)


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
    from alliance.data.steps import read_study, run_gate, run_validation, without_drop_columns

    config = load_config(args.config)
    logging.getLogger("alliance.progress").setLevel(logging.INFO)  # a large file's reading shows progress
    raw = read_study(config, drop=False)  # read once: a national study's files take minutes to parse
    gate = run_gate(config, raw)
    study = without_drop_columns(raw, config)
    del raw
    report = run_validation(config, study)
    print(f"Configuration {args.config}: valid")
    print("De-identification gate: passed (no direct identifier in the columns the config maps)")
    for file, entry in gate["files"].items():
        unmapped = entry.get("columns_dropped_unmapped", [])
        if unmapped:
            print(f"  {file}: {len(unmapped)} column(s) the config does not map dropped unread: "
                  f"{', '.join(unmapped)}")
    print("Data: valid")
    for name, table in report["tables"].items():
        print(f"  table {name}: {table['file']}, {table['rows']} rows")
    from alliance.data.ids import normalise_ids
    from alliance.data.validate import clients_therapist_ids, column_map, table_therapists

    # Counted as ingest will: normalised ids, a table's therapist from the client table if need be.
    client_therapists = clients_therapist_ids(study.clients, config.get("clients"))
    clients, therapists = set(), set()
    for name, frame in study.frames.items():
        cols = column_map(config["tables"][name])
        ids = normalise_ids(frame[cols["client_id"]])
        clients.update(ids.dropna())
        therapists.update(table_therapists(frame, cols, ids, client_therapists).dropna())
    print(f"  {len(therapists)} therapists, {len(clients)} clients")
    for entry, key in report["instruments"].items():
        print(f"  instrument {entry}: key {key}, table {config['instruments'][entry]['table']}")
    for note in report["notes"]:
        print(f"  note: {note}")
    return 0




def _refuse_templating(path: str | Path) -> None:
    """Refuse a YTE-templated config (``__use_yte__``): Snakemake would evaluate it as code."""
    from alliance.config import refuse_templating

    refuse_templating(path)


def _checked_config(path: str) -> dict:
    """The config at ``path``, validated; a templated or invalid one stops here, before Snakemake."""
    from alliance.config import load_config

    _refuse_templating(path)
    return load_config(path)


def snakemake_command(config: str | Path, *extra: str, targets=(), cores: int = 1,
                      dry_run: bool = False) -> list[str]:
    """The Snakemake command that runs exactly ``config`` with this package's workflow.

    The current folder is the working directory (results/ and logs/ go there). Targets come
    before ``--configfile``, which would read every following word as one more config file.
    """
    from alliance import resources

    command = [sys.executable, "-m", "snakemake", *targets,
               "--snakefile", str(resources.snakefile()),
               "--directory", os.getcwd(),
               "--cores", str(cores)]
    if dry_run:
        command.append("--dry-run")
    return [*command, *extra, "--configfile", str(config)]


def _snakemake(command: list[str]) -> int:
    """Run ``command`` with the workflow's root in the environment; Snakemake's exit code."""
    from alliance import resources

    env = dict(os.environ, **{resources.ROOT_ENV: str(resources.root())})
    print("running: snakemake " + " ".join(command[3:]), file=sys.stderr)
    return subprocess.run(command, env=env, check=False).returncode


def _run(args) -> int:
    _checked_config(args.config)
    return _snakemake(snakemake_command(args.config, targets=args.targets, cores=args.cores,
                                        dry_run=args.dry_run))


def report_command(config: str | Path, output: str | Path) -> list[str]:
    """The Snakemake command that writes the HTML report of a finished run of ``config``."""
    return snakemake_command(config, "--report", str(output))


def _report(args) -> int:
    _checked_config(args.config)
    return _snakemake(report_command(args.config, args.output))


def _init(args) -> int:
    try:
        from alliance.wizard import init_config
    except ImportError as err:
        if err.name not in ("alliance.wizard", "alliance"):
            raise
        print("error: alliance init is not available in this installation", file=sys.stderr)
        return 2
    result = init_config(args.data_dir, args.output, force=args.force)
    print(result.transcript)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alliance")
    except PackageNotFoundError:  # the source on PYTHONPATH, never installed
        return "unknown (not installed)"


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default is None or action.required:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    formatter = _DefaultsFormatter
    parser = argparse.ArgumentParser(prog="alliance", description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ini = sub.add_parser("init", formatter_class=formatter,
                         help="draft a commented config from a folder of data exports")
    ini.add_argument("data_dir", metavar="DATA_DIR", help="folder holding the study's exported tables")
    ini.add_argument("-o", "--output", required=True, metavar="CONFIG", help="config file to write")
    ini.add_argument("--force", action="store_true", help="overwrite CONFIG if it exists")
    ini.set_defaults(func=_init)

    val = sub.add_parser("validate", formatter_class=formatter,
                         help="check the config and the data without running any analysis")
    val.add_argument("config", metavar="CONFIG", help="config file, e.g. config/config.yaml")
    val.set_defaults(func=_validate)

    run = sub.add_parser("run", formatter_class=formatter,
                         help="run the workflow on exactly this config (results/ in the current folder)")
    run.add_argument("config", metavar="CONFIG", help="config file of the study")
    run.add_argument("targets", nargs="*", metavar="TARGET",
                     help="rules or files to build (e.g. power, validate_recovery); all results if none")
    run.add_argument("--cores", type=int, default=1, help="CPU cores Snakemake may use")
    run.add_argument("-n", "--dry-run", action="store_true", help="list the jobs without running them")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", formatter_class=formatter,
                         help="write the HTML report of a finished run of this config")
    rep.add_argument("config", metavar="CONFIG", help="config file of the study")
    rep.add_argument("-o", "--output", default="results/report.html", help="report file to write")
    rep.set_defaults(func=_report)

    sim = sub.add_parser("simulate", formatter_class=formatter,
                         help="write a simulated study with its ground truth")
    sim.add_argument("--out", required=True, help="output folder")
    sim.add_argument("--seed", type=int, default=20261129, help="random seed")
    sim.add_argument("--therapists", type=int, default=40, help="number of therapists")
    sim.add_argument("--clients", type=int, default=400, help="number of clients")
    sim.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format of the tables")
    sim.set_defaults(func=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, InputError, IdentifierError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
