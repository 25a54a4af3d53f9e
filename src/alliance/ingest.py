"""From raw study files to the tidy analysis dataset: gate, validate, pseudonymise, reshape.

The three steps are separate functions (and separate workflow rules) so that each leaves its own
record; each reads the raw files itself and writes nothing unless it succeeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.deid import pseudonymise, refuse_identifiers
from alliance.keys import study_key
from alliance.instruments import keys_from_config
from alliance.io import read_table
from alliance.outputs import write_csv, write_json, write_parquet
from alliance.ids import normalise_ids
from alliance.validate import (_numeric, clients_therapist_ids, column_map, item_columns, table_therapists,
                               validate_study)

log = logging.getLogger(__name__)


@dataclass
class RawStudy:
    frames: dict[str, pd.DataFrame]
    files: dict[str, str]
    clients: pd.DataFrame | None
    clients_file: str | None


def input_files(config: dict) -> list[str]:
    """Every raw file the config names, in a fixed order."""
    files = [t["path"] for t in config["tables"].values()]
    if config.get("clients"):
        files.append(config["clients"]["path"])
    return files


def instrument_key_paths(config: dict) -> list[str]:
    """The key files the configured instruments are scored with, relative to the working folder."""
    import os

    from alliance.instruments import INSTRUMENTS_DIR

    paths = set()
    for spec in config["instruments"].values():
        shipped = INSTRUMENTS_DIR / f"{spec['key']}.yaml"
        # A key file of one's own stands alone: its key name need not be a shipped one.
        if not spec.get("key_file") or shipped.exists():
            paths.add(os.path.relpath(shipped))
        if spec.get("key_file"):
            paths.add(spec["key_file"])
    return sorted(paths)


def read_study(config: dict, drop: bool = True) -> RawStudy:
    """Read every table the config names; columns listed under deid.drop_columns are removed."""
    dropped = set(config.get("deid", {}).get("drop_columns", [])) if drop else set()
    frames, files = {}, {}
    for name, table in config["tables"].items():
        frame = read_table(table["path"], table.get("sheet"), table.get("header_row"))
        frames[name] = frame.drop(columns=[c for c in frame.columns if c in dropped])
        files[name] = table["path"]
    clients, clients_file = None, None
    if config.get("clients"):
        clients_file = config["clients"]["path"]
        clients = read_table(clients_file, config["clients"].get("sheet"), config["clients"].get("header_row"))
        clients = clients.drop(columns=[c for c in clients.columns if c in dropped])
    return RawStudy(frames, files, clients, clients_file)


def run_gate(config: dict) -> dict:
    """Refuse any file with a direct identifier; return the scan report."""
    study = read_study(config, drop=False)  # the gate drops the columns itself, and reports them
    tables = {study.files[n]: f for n, f in study.frames.items()}
    if study.clients is not None:
        tables[study.clients_file] = study.clients
    deid = config.get("deid", {})
    report = refuse_identifiers(tables, deid.get("drop_columns", []), deid.get("allow_columns", []))
    return {"files": report, "drop_columns": deid.get("drop_columns", []), "passed": True}


def run_validation(config: dict) -> dict:
    """Validate the study; return a report (no ids in it) or raise InputError."""
    study = read_study(config)
    keys = keys_from_config(config)
    checked = validate_study(study.frames, config, keys, study.files, study.clients, study.clients_file)
    for note in checked.notes:
        log.warning(note)
    report = {
        "passed": True,
        "tables": {n: {"file": study.files[n], "rows": int(len(f))} for n, f in study.frames.items()},
        "notes": checked.notes,
        "instruments": {e: config["instruments"][e]["key"] for e in keys},
    }
    return report


def build_administrations(study: RawStudy, config: dict, keys: dict, id_key: bytes) -> pd.DataFrame:
    """The tidy analysis dataset (docs/data_contract.md): one row per administration."""
    parts = []
    client_therapists = clients_therapist_ids(study.clients, config.get("clients") or {})
    for name, frame in study.frames.items():
        tconf = config["tables"][name]
        cols = column_map(tconf)
        # a table without a therapist column takes each client's therapist from the client table
        therapists = table_therapists(frame, cols, normalise_ids(frame[cols["client_id"]]), client_therapists)
        part = pd.DataFrame({
            "client": pseudonymise(frame[cols["client_id"]], "client", id_key),
            "therapist": pseudonymise(therapists, "therapist", id_key),
            "session": _numeric(frame[cols["session"]]).astype("int64"),
        })
        if cols["days_since_intake"] in frame.columns:
            part["days_since_intake"] = _numeric(frame[cols["days_since_intake"]]).astype("Int64")
        else:
            part["days_since_intake"] = pd.array([pd.NA] * len(frame), dtype="Int64")
        if "respondent" in tconf:
            part["respondent"] = tconf["respondent"]
        else:
            part["respondent"] = frame[cols["respondent"]].astype(str).str.strip().to_numpy()
        if cols["rater_id"] in frame.columns:
            part["rater"] = pseudonymise(frame[cols["rater_id"]], "rater", id_key)
        else:
            part["rater"] = None
        part["table"] = name
        for entry, spec in config["instruments"].items():
            if spec["table"] != name:
                continue
            for n, column in enumerate(item_columns(spec, keys[entry].n_items), start=1):
                part[f"{entry}_{n}"] = _numeric(frame[column]).to_numpy()
        parts.append(part)
    tidy = pd.concat(parts, ignore_index=True, sort=False)
    tidy["respondent"] = tidy["respondent"].astype(str)
    for col in ("client", "therapist", "rater", "table"):
        tidy[col] = tidy[col].astype("string")
    order = ["table", "client", "session", "respondent", "rater"]
    tidy = tidy.sort_values(order, kind="mergesort", na_position="first").reset_index(drop=True)
    fixed = ["client", "therapist", "session", "days_since_intake", "respondent", "rater", "table"]
    return tidy[fixed + [c for c in tidy.columns if c not in fixed]]


def build_clients(study: RawStudy, config: dict, administrations: pd.DataFrame, id_key: bytes) -> pd.DataFrame:
    """One row per client: pseudonym, first therapist, configured covariates."""
    first = (administrations.sort_values(["client", "session"], kind="mergesort")
             .drop_duplicates("client")[["client", "therapist"]])
    if study.clients is None:
        return first.sort_values("client").reset_index(drop=True)
    conf = config["clients"]
    raw = study.clients
    covs = pd.DataFrame({"client": pseudonymise(raw[conf.get("client_id", "client_id")], "client", id_key)})
    for cov in conf.get("covariates", []):
        values = raw[cov]
        numeric = _numeric(values)
        covs[cov] = numeric if numeric.notna().sum() == values.notna().sum() else values.astype("string")
    covs["client"] = covs["client"].astype("string")
    merged = first.merge(covs, on="client", how="left")
    return merged.sort_values("client").reset_index(drop=True)


def run_ingest(config: dict, out_administrations, out_clients, out_switches) -> None:
    """Write the tidy analysis dataset, the client table and the therapist-switch report."""
    study = read_study(config)
    keys = keys_from_config(config)
    validate_study(study.frames, config, keys, study.files, study.clients, study.clients_file)
    id_key = study_key(config)
    tidy = build_administrations(study, config, keys, id_key)
    clients = build_clients(study, config, tidy, id_key)
    switches = switch_report(tidy)
    write_parquet(tidy, out_administrations)
    write_parquet(clients, out_clients)
    write_csv(switches, out_switches)
    log.info("analysis dataset: %d administrations, %d clients, %d therapists",
             len(tidy), tidy["client"].nunique(), tidy["therapist"].nunique())


def switch_report(tidy: pd.DataFrame) -> pd.DataFrame:
    """Pseudonymised clients seen by more than one therapist, with each therapist's sessions."""
    pairs = tidy.groupby(["client", "therapist"], observed=True)["session"].agg(["min", "max", "count"])
    pairs = pairs.reset_index().rename(columns={"min": "first_session", "max": "last_session",
                                                "count": "administrations"})
    multi = pairs.groupby("client")["therapist"].transform("nunique") > 1
    return pairs[multi].sort_values(["client", "first_session"]).reset_index(drop=True)
