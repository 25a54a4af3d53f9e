"""From raw study files to the tidy analysis dataset: gate, validate, pseudonymise, reshape.

The three steps are separate functions (and separate workflow rules) so that each leaves its own
record; each reads the raw files itself and writes nothing unless it succeeds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from alliance.data.deid import pseudonymise, refuse_identifiers
from alliance.data.keys import study_key
from alliance.scoring.instruments import instrument_labels, keys_from_config
from alliance.scoring.scores import stable_order
from alliance.data.io import read_columns
from alliance.outputs import atomic_path, read_parquet, write_csv, write_json, write_parquet
from alliance.data.ids import normalise_ids
from alliance.data.validate import (
    _numeric,
    clients_therapist_ids,
    column_map,
    item_columns,
    table_therapists,
    validate_study,
)


from alliance.data.summary import completion, sample_sizes, scheduled_completion

log = logging.getLogger(__name__)


@dataclass
class RawStudy:
    frames: dict[str, pd.DataFrame]
    files: dict[str, str]
    clients: pd.DataFrame | None
    clients_file: str | None
    dropped: dict = field(default_factory=dict)  # file -> {"drop_columns": [...], "unmapped": [...]}


ID_ROLES = ("client_id", "therapist_id", "rater_id")


def column_roles(config: dict) -> dict[str, dict[str, str]]:
    """Table name (``clients`` for the client table) -> {mapped column: its role for the gate}.

    Ids (client, therapist, rater) are ``id``; client covariates ``covariate``; columns under
    ``deid: text_columns`` ``text``; sessions, days, respondent and item columns ``data``. A
    column not in this map is not read.
    """
    keys = keys_from_config(config)
    text = set(config.get("deid", {}).get("text_columns", []))
    roles: dict[str, dict[str, str]] = {}
    for name, tconf in config["tables"].items():
        cols = column_map(tconf)
        table = {column: ("id" if role in ID_ROLES else "data") for role, column in cols.items()}
        for entry, spec in config["instruments"].items():
            if spec["table"] == name:
                try:
                    table.update({c: "data" for c in item_columns(spec, keys[entry].n_items)})
                except ValueError as err:
                    raise ValueError(f"instruments: {entry}: {err}") from None
        roles[name] = table
    if config.get("clients"):
        conf = config["clients"]
        table = {c: "covariate" for c in conf.get("covariates", [])}
        table[conf.get("client_id", "client_id")] = "id"
        if conf.get("therapist_id"):
            table[conf["therapist_id"]] = "id"
        roles["clients"] = table
    deid = config.get("deid", {})
    for table in roles.values():  # declared text is kept (and scanned as text), so are vouched columns
        table.update({c: "text" for c in text})
        table.update({c: "data" for c in deid.get("allow_columns", []) if c not in table})
    return roles


def read_study(config: dict, drop: bool = True, roles: dict | None = None) -> RawStudy:
    """Read the columns the config maps from every table it names.

    A column the config does not map (not an id, session, days, respondent or rater column, not
    an instrument item, not a client covariate) is removed as soon as its file is read, so that
    nothing downstream sees it; so are the columns under ``deid: drop_columns``. Both are listed
    in ``RawStudy.dropped`` (file -> ``drop_columns`` / ``unmapped``) for the gate's report.
    ``drop=False`` keeps the ``drop_columns`` (never the unmapped ones). ``roles`` is
    :func:`column_roles` of the config, if the caller has it already.
    """
    configured = set(config.get("deid", {}).get("drop_columns", []))
    dropped = configured if drop else set()
    roles = roles or column_roles(config)
    frames, files, record = {}, {}, {}

    def load(path, sheet, header_row, mapped):
        # only the kept columns are converted; text cells come dictionary-encoded (Categorical)
        frame, names = read_columns(path, sheet, header_row, keep=(set(mapped) | configured) - dropped)
        unmapped = [c for c in names if c not in mapped and c not in configured]
        removed = [c for c in names if c in dropped and c not in unmapped]
        record[path] = {"drop_columns": removed, "unmapped": unmapped}
        return frame

    for name, table in config["tables"].items():
        frames[name] = load(table["path"], table.get("sheet"), table.get("header_row"), roles[name])
        files[name] = table["path"]
    clients, clients_file = None, None
    if config.get("clients"):
        clients_file = config["clients"]["path"]
        clients = load(clients_file, config["clients"].get("sheet"), config["clients"].get("header_row"),
                       roles["clients"])
    return RawStudy(frames, files, clients, clients_file, record)


def run_gate(config: dict, study: RawStudy | None = None) -> dict:
    """Refuse any file with a direct identifier; return the scan report.

    Only mapped columns are scanned; unmapped ones are dropped unread and listed per file under
    ``columns_dropped_unmapped``, or refused with ``deid: unmapped: refuse``. ``study`` is the
    study as :func:`read_study` with ``drop=False`` reads it, if the caller has it already.
    """
    roles = column_roles(config)
    if study is None:  # the gate drops drop_columns itself, and reports them
        study = read_study(config, drop=False, roles=roles)
    tables = {study.files[n]: f for n, f in study.frames.items()}
    table_roles = {study.files[n]: roles[n] for n in study.frames}
    if study.clients is not None:
        tables[study.clients_file] = study.clients
        table_roles[study.clients_file] = roles["clients"]
    deid = config.get("deid", {})
    unmapped = {file: study.dropped[file]["unmapped"] for file in tables}
    report = refuse_identifiers(tables, deid.get("drop_columns", []), deid.get("allow_columns", []),
                                roles=table_roles, unmapped=unmapped,
                                refuse_unmapped=deid.get("unmapped", "drop") == "refuse")
    return {"files": report, "drop_columns": deid.get("drop_columns", []),
            "unmapped": deid.get("unmapped", "drop"), "passed": True}


def without_drop_columns(study: RawStudy, config: dict) -> RawStudy:
    """The study as :func:`read_study` reads it by default, from one read with ``drop=False``."""
    dropped = set(config.get("deid", {}).get("drop_columns", []))

    def drop(frame, file):
        removed = [c for c in frame.columns if c in dropped]
        return (frame.drop(columns=removed) if removed else frame), removed

    frames, record = {}, {}
    for name, frame in study.frames.items():
        frames[name], removed = drop(frame, study.files[name])
        record[study.files[name]] = {**study.dropped[study.files[name]], "drop_columns": removed}
    clients = None
    if study.clients is not None:
        clients, removed = drop(study.clients, study.clients_file)
        record[study.clients_file] = {**study.dropped[study.clients_file], "drop_columns": removed}
    return RawStudy(frames, study.files, clients, study.clients_file, record)


def run_validation(config: dict, study: RawStudy | None = None) -> dict:
    """Validate the study; return a report (no ids in it) or raise InputError. ``study`` is the
    study as :func:`read_study` reads it, if the caller has it already."""
    if study is None:
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
    order = stable_order(tidy, ["table", "client", "session", "respondent", "rater"], na_position="first")
    fixed = ["client", "therapist", "session", "days_since_intake", "respondent", "rater", "table"]
    # sorted one column at a time, each unsorted column freed as its copy is made (sort_values,
    # reset_index and the column selection would hold three copies of the table)
    names = [*fixed, *[c for c in tidy.columns if c not in fixed]]
    columns = [pd.Series(tidy.pop(c).array.take(order), name=c, copy=False) for c in names]
    return pd.concat(columns, axis=1, copy=False)


def build_clients(study: RawStudy, config: dict, administrations: pd.DataFrame, id_key: bytes) -> pd.DataFrame:
    """One row per client: pseudonym, first therapist, configured covariates."""
    first = (administrations[["client", "session", "therapist"]].sort_values(["client", "session"], kind="mergesort")
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



def write_summary(administrations_path, clients_path, switches_path, out_json, out_completion, out_figure,
                  out_caption=None, config=None) -> None:
    """Write the summary numbers, the completion table and the missingness figure (with, when
    ``out_caption`` is given, its caption sentence of sessions and N; instrument names from the
    keys of ``config``)."""
    # imported here: the other data steps draw nothing and need no matplotlib
    from alliance.data.figures import missingness_caption, missingness_figure
    from alliance.report.style import close, save_figure

    administrations = read_parquet(administrations_path)
    clients = read_parquet(clients_path)
    switches = pd.read_csv(switches_path)
    summary = sample_sizes(administrations, clients)
    summary["therapist_switches"] = int(switches["client"].nunique()) if len(switches) else 0
    comp = completion(administrations)
    write_json(summary, out_json)
    write_csv(comp, out_completion)
    labels = instrument_labels(config) if config else None
    fig, facts = missingness_figure(scheduled_completion(administrations), labels)
    save_figure(fig, out_figure)
    close(fig)
    if out_caption:
        with atomic_path(out_caption) as tmp:
            tmp.write_text(missingness_caption(facts, summary["clients"], labels), encoding="utf-8")
