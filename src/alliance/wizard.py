"""``alliance init``: draft a study's config from a folder of table exports.

The wizard reads every table in a folder (through :func:`alliance.data.io.read_table`), tells the
administration tables (with a session column) from the client table (one row per client),
maps the id and session columns to their roles, recognises the shipped instruments from the
item names, item counts and response ranges, lists the columns that look identifying under
``deid: drop_columns`` and writes a commented YAML config. Whatever it cannot decide is written
as the string ``"DECIDE: <question>"``, which :func:`pending_decisions` lists.

The wizard never prints or writes a value from the data: only file and column names, counts and
shapes, and the instrument keys' own response ranges.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
import textwrap
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from alliance.data import deid
from alliance.config import DECIDE, load_schema, pending_decisions  # noqa: F401 (re-exported)
from alliance.errors import InputError
from alliance.scoring import instruments
from alliance.data.io import SUPPORTED, read_table


# Normalised column names (lower case, accents and separators removed) of each role.
ROLE_NAMES = {
    "client_id": {"clientid", "client", "clientnr", "clientno", "patient", "patientid", "patientnr",
                  "klient", "klientin", "klientid", "klientnr", "pat", "patid", "patnr", "case", "caseid",
                  "fall", "fallid", "fallnr", "id", "pid", "participant", "participantid", "cliente",
                  "paciente", "patienten"},
    "therapist_id": {"therapistid", "therapist", "therapistnr", "therapeut", "therapeutin", "therapeutid",
                     "therapeutnr", "th", "thid", "thnr", "ther", "therid", "clinician", "clinicianid",
                     "therapeute", "terapeuta", "counsellor", "counselor"},
    "session": {"session", "sessionnr", "sessionno", "sessionnumber", "sess", "sitzung", "sitzungnr",
                "sitzungsnr", "sitzungsnummer", "seance", "sesion", "sessione", "visit", "visitnr", "termin",
                "terminnr", "week", "woche", "stunde", "stundennr", "occasion", "wave"},
    "days_since_intake": {"dayssinceintake", "days", "daysintake", "dayssincestart", "tage", "tag",
                          "tageseitaufnahme", "day", "jours", "dias"},
    "rater_id": {"raterid", "rater", "coder", "coderid", "beurteiler", "beurteilerin", "beurteilerid",
                 "observer", "observerid", "judge", "kodierer", "codierer", "rateur", "codeur"},
}
# Names that may mean something else (a row number, a calendar day): used only when nothing
# more specific names the role.
GENERIC_NAMES = {"id", "pid", "day", "days", "tag", "tage", "week", "woche", "wave", "occasion", "observer"}
THERAPIST_HINTS = ("therapist", "therapeut", "therapeute", "terapeuta", "clinician")
CLIENT_HINTS = ("client", "klient", "patient", "pat", "self")
OBSERVER_HINTS = ("observer", "rating", "coder", "rater", "beurteil", "fremd")

# Item-name stems (normalised) that name a shipped key; the key's facts decide the rest.
STEM_HINTS = {
    "wai": ("wai_sr", "wai_s", "wai_36", "wai_sr_t", "wai_o_s"), "waisr": ("wai_sr",),
    "wais": ("wai_s",), "twai": ("wai_sr_t",), "thwai": ("wai_sr_t",), "wait": ("wai_sr_t",),
    "waisrt": ("wai_sr_t",), "owai": ("wai_o_s",), "waio": ("wai_o_s",), "waios": ("wai_o_s",),
    "phq": ("phq9",), "phq9": ("phq9",), "gad": ("gad7",), "gad7": ("gad7",), "oq": ("oq45",),
    "oq45": ("oq45",), "srs": ("srs",), "ors": ("ors",), "core": ("core_om", "core_10"),
    "coreom": ("core_om",), "core10": ("core_10",), "bdi": ("bdi_ii",), "bdiii": ("bdi_ii",),
    "haq": ("haq_ii",), "haqii": ("haq_ii",), "hak": ("haq_ii",),
}
ALLIANCE_KEYS = ("wai_sr", "wai_s", "wai_36", "srs", "haq_ii", "wai_sr_t", "wai_o_s")
OUTCOME_ORDER = ("phq9", "oq45", "core_om", "core_10", "bdi_ii", "gad7", "ors")
ITEM = re.compile(r"^(.*?)(\d+)$")


@dataclass
class InitResult:
    """What ``alliance init`` drafted.

    Attributes
    ----------
    config : dict
        The drafted config, as written (``"DECIDE: ..."`` strings where a decision is pending).
    decisions : list of str
        ``at <path>: <question>`` for every pending decision.
    transcript : str
        What was found and decided, for the terminal; no data value in it.
    output : Path
        The written file.
    """

    config: dict
    decisions: list[str]
    transcript: str
    output: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Table:
    name: str
    file: str
    sheet: str | None
    frame: pd.DataFrame
    roles: dict[str, str] = field(default_factory=dict)
    kind: str = "unused"  # administration, clients, unused
    respondent: str | None = None
    respondent_why: str = ""
    instruments: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _norm(text: str) -> str:
    plain = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain.lower())


# --- reading the folder -------------------------------------------------------------------

def _sheet_names(path: Path) -> list[str | None]:
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return [None]
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            return list(book.sheet_names)
    except Exception:  # read_table names the cause below
        return [None]


def _table_name(path: Path, sheet: str | None, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_").lower() or "table"
    if sheet is not None:
        base += "_" + (re.sub(r"[^A-Za-z0-9_]+", "_", sheet).strip("_").lower() or "sheet")
    if base[0].isdigit():
        base = "t_" + base
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def read_folder(data_dir: Path) -> tuple[list[_Table], list[tuple[str, str]]]:
    """Every readable table (each Excel sheet with data) and every skipped file with its reason."""
    tables, skipped, taken = [], [], set()
    files = sorted(p for p in data_dir.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(data_dir).parts))
    for path in files:
        if path.suffix.lower() not in SUPPORTED:
            skipped.append((str(path), f"not a table format ({', '.join(SUPPORTED)})"))
            continue
        sheets = _sheet_names(path)
        for sheet in sheets:
            where = str(path) if sheet is None else f"{path} (sheet {sheet!r})"
            try:
                frame = read_table(path, sheet)
            except (InputError, ValueError) as err:
                first = str(err).strip().splitlines()
                reason = first[-1].strip() if first else type(err).__name__
                reason = re.sub(rf"^- {re.escape(str(path))}[;,:]?\s*", "", reason)  # the path is named already
                if sheet is not None and ("data rows" in reason or "IndexError" in reason):
                    reason = "an empty sheet"
                skipped.append((where, reason))
                continue
            tables.append(_Table(_table_name(path, sheet if len(sheets) > 1 else None, taken),
                                 str(path), sheet if len(sheets) > 1 else None, frame))
    return tables, skipped


# --- roles, tables and respondents --------------------------------------------------------

def map_roles(columns) -> dict[str, str]:
    """Role -> the column that plays it, by the column's name in several languages.

    A specific name (``Klient``) wins over a generic one (``id``) wherever it stands.
    """
    roles: dict[str, tuple[int, str]] = {}
    taken = set()
    for rank in (0, 1):
        for column in columns:
            key = _norm(column)
            if column in taken or (key in GENERIC_NAMES) != bool(rank):
                continue
            for role, names in ROLE_NAMES.items():
                if role not in roles and key in names:
                    roles[role] = (rank, column)
                    taken.add(column)
                    break
    return {role: roles[role][1] for role in ROLE_NAMES if role in roles}


def _unique_ids(frame: pd.DataFrame, column: str) -> bool:
    ids = frame[column].dropna().astype(str).str.strip()
    return len(ids) == len(frame) and ids.is_unique


def _guess_respondent(table: _Table) -> None:
    name = _norm(table.name)
    if "rater_id" in table.roles:
        table.respondent, table.respondent_why = "observer", f"a rater column ('{table.roles['rater_id']}')"
        return
    if any(h in name for h in OBSERVER_HINTS):
        table.respondent, table.respondent_why = "observer", "the file name"
        return
    stem = Path(table.file).stem.lower()
    if any(h in name for h in THERAPIST_HINTS) or stem.startswith(("th_", "t_")):
        table.respondent, table.respondent_why = "therapist", "the file name"
        return
    if any(h in name for h in CLIENT_HINTS):
        table.respondent, table.respondent_why = "client", "the file name"


def _respondent_from_instruments(table: _Table, keys: dict[str, dict]) -> None:
    """A table of unknown respondent whose recognised forms all have one respondent is theirs."""
    if table.respondent is not None:
        return
    found = {tuple(keys[i["key"]].get("respondents", [])) for i in table.instruments if i["key"]}
    if len(found) == 1 and len(next(iter(found))) == 1:
        table.respondent = next(iter(found))[0]
        table.respondent_why = "its instruments (forms with one respondent)"


# --- instruments ---------------------------------------------------------------------------

def _shipped_keys() -> dict[str, dict]:
    """Every shipped key's document, licence-required and incomplete ones included."""
    folder = instruments.INSTRUMENTS_DIR
    return {name: instruments.read_key_document(folder / f"{name}.yaml")
            for name in instruments.available_instruments(folder)}


def item_groups(columns) -> list[tuple[str, list[str]]]:
    """Column groups named stem + 1..k (``wai1``, ``WAI_01``, ``phq_1``), in column order."""
    groups: dict[str, dict[int, str]] = {}
    order: list[str] = []
    for column in columns:
        match = ITEM.match(str(column))
        if not match or not match.group(1):
            continue
        stem = match.group(1)
        if stem not in groups:
            groups[stem] = {}
            order.append(stem)
        groups[stem].setdefault(int(match.group(2)), column)
    result = []
    for stem in order:
        numbers = sorted(groups[stem])
        run = []
        for n in range(1, len(numbers) + 1):
            if n not in groups[stem]:
                break
            run.append(groups[stem][n])
        if len(run) >= 2:
            result.append((stem, run))
    return result


def _observed_range(frame: pd.DataFrame, columns: list[str]) -> tuple[float, float, bool] | None:
    """Min, max and whether all answered values are numbers (used for matching, never shown)."""
    values = frame[columns].apply(lambda s: pd.to_numeric(s, errors="coerce"))
    answered = frame[columns].notna()
    numeric = bool((values.notna() == answered).all().all())
    if not values.notna().any().any():
        return None
    return float(values.min().min()), float(values.max().max()), numeric


def _items_value(stem: str, columns: list[str]):
    if all(c == f"{stem}{n}" for n, c in enumerate(columns, start=1)) and "{" not in stem and "}" not in stem:
        return f"{stem}{{n}}"
    return list(columns)  # zero-padded or irregular names: the config's pattern knows only {n}


def _fits(doc: dict, n: int, respondent: str | None, seen) -> bool:
    if doc.get("n_items") not in (None, n):
        return False
    if respondent is not None and respondent not in doc.get("respondents", []):
        return False
    lo, hi = doc.get("response_min"), doc.get("response_max")
    if seen is None or lo is None or hi is None:
        return True
    return seen[0] >= lo and seen[1] <= hi


def _key_shape(doc: dict) -> str:
    n = f"{doc['n_items']} items" if doc.get("n_items") else "any number of items"
    lo, hi = doc.get("response_min"), doc.get("response_max")
    return f"{n} in {lo:g}–{hi:g}" if lo is not None and hi is not None else f"{n}, range not shipped"


def recognise(table: _Table, keys: dict[str, dict]) -> None:
    """Match every item group of a table to a shipped key by stem, item count and value range."""
    for stem, columns in item_groups(table.frame.columns):
        seen = _observed_range(table.frame, columns)
        if seen is not None and not seen[2]:
            table.notes.append(f"columns {columns[0]}…{columns[-1]} hold text; not read as items")
            continue
        hinted = STEM_HINTS.get(_norm(stem), ())
        fitting = [k for k in keys if _fits(keys[k], len(columns), table.respondent, seen)]
        named = [k for k in hinted if k in fitting]
        # without a name, only a key with a fixed number of items is evidence
        fitting = [k for k in fitting if keys[k].get("n_items")]
        if len(named) > 1:  # the tightest response range that holds the data
            named.sort(key=lambda k: ((keys[k].get("response_max") or 99) - (keys[k].get("response_min") or 0),
                                      hinted.index(k)))
            named = named[:1]
        span = f"{columns[0]}…{columns[-1]} ({len(columns)} items)"
        if named:
            key, sure = named[0], "sure: item names, count and range"
        elif len(fitting) == 1 and hinted == ():
            key, sure = fitting[0], "likely: item count and range only, not the names"
        elif hinted and seen is not None:
            fit_for = [k for k in hinted if table.respondent in (None, *keys[k].get("respondents", []))] or list(hinted)
            ranges = ", ".join(f"{k}: {_key_shape(keys[k])}" for k in fit_for)
            table.notes.append(f"{span}: named like {', '.join(fit_for)}, but the item count or some values "
                               f"do not fit ({ranges}); an undeclared missing-value code? Left out")
            continue
        elif fitting:
            table.instruments.append({"entry": _norm(stem) or "items", "key": None, "stem": stem,
                                      "columns": columns, "candidates": fitting, "sure": "unsure"})
            continue
        else:
            continue
        table.instruments.append({"entry": key, "key": key, "stem": stem, "columns": columns,
                                  "candidates": [key], "sure": sure})


# --- identifying columns ---------------------------------------------------------------------

def identifying_columns(table: _Table, keep: set[str]) -> dict[str, str]:
    """Column -> why it looks identifying, from its name and its values (values never kept)."""
    found = {}
    for column in table.frame.columns:
        if column in keep:
            continue
        kind = deid.scan_column_name(column)
        if kind is not None:
            found[column] = f"its name announces a {kind}"
            continue
        hit = deid.scan_values(table.frame[column])
        if hit is not None:
            found[column] = f"{len(hit[1])} of its values look like a {hit[0]}"
    return found


# --- the config ----------------------------------------------------------------------------

def _study_section() -> dict:
    return {"name": "My study (drafted by alliance init)", "seed": 20260101}


STUDY_COMMENTS = {("study", "name"): ["placeholder: the study's name, shown in the report"],
                  ("study", "seed"): ["placeholder: any whole number; keep it fixed once results are reported"],
                  ("pseudonymisation", "key_env"): [
                      "the HMAC key of the pseudonyms comes from this environment variable; never the demo key"]}


def _analysis_sections(entries: dict, tables: dict, keys: dict) -> tuple[dict, dict]:
    """The analysis sections the recognised instruments support, and why each is on or off."""
    def of(respondent, pool):
        return [e for e, spec in entries.items()
                if spec["key"] in pool and tables[spec["table"]].get("respondent") == respondent]

    client_alliance = of("client", ALLIANCE_KEYS)
    therapist_alliance = of("therapist", ALLIANCE_KEYS)
    observer = of("observer", set(keys))
    outcomes = sorted(of("client", OUTCOME_ORDER), key=lambda e: OUTCOME_ORDER.index(entries[e]["key"]))
    with_change = [e for e in outcomes if keys[entries[e]["key"]].get("norms")]
    sections: dict = {}
    why: dict[tuple, list[str]] = {}
    alliance, outcome = (client_alliance or [None])[0], (with_change or [None])[0]
    why[("ruptures",)] = [f"on: session-by-session client alliance ({alliance}) and an outcome with change norms ({outcome})"
                          if alliance and outcome else
                          "off: needs a client alliance instrument and an outcome instrument with change norms"]
    why[("agreement",)] = [f"on: the client ({alliance}) and therapist ({therapist_alliance[0]}) rate the alliance"
                           if alliance and therapist_alliance else
                           "off: needs a client and a therapist alliance instrument"]
    why[("interrater",)] = [f"on: observer ratings ({', '.join(observer)})" if observer else
                            "off: no observer-rated instrument"]
    why[("models",)] = [f"on: alliance {alliance} -> outcome {outcomes[0]}; add covariates from clients: covariates"
                        if alliance and outcomes else "none: needs a client alliance and an outcome instrument"]
    if alliance and outcome:
        sections["ruptures"] = {"enabled": True, "instrument": alliance, "respondent": "client",
                                "scale": "total", "outcome": {"instrument": outcome, "covariates": []}}
    else:
        sections["ruptures"] = {"enabled": False}
    if alliance and therapist_alliance:
        sections["agreement"] = {"enabled": True, "client_instrument": alliance,
                                 "therapist_instrument": therapist_alliance[0]}
        if outcome:
            sections["agreement"]["surface"] = {"outcome": outcome}
    else:
        sections["agreement"] = {"enabled": False}
    sections["interrater"] = {"enabled": bool(observer)}
    fits = {}
    if alliance and outcomes:
        measure = {"instrument": alliance, "respondent": "client", "scale": "total"}
        fits[f"early_{outcomes[0]}_post"] = {
            "kind": "early_outcome", "label": f"Early alliance -> {outcomes[0]} post",
            "outcome": {"instrument": outcomes[0], "scale": "total"}, "alliance": measure, "variant": "post"}
        fits["within_between"] = {
            "kind": "within_between", "label": f"Within/between, {outcomes[0]} on {alliance} at t-1",
            "outcome": {"instrument": outcomes[0], "scale": "total"}, "alliance": measure}
    sections["models"] = {"fits": fits}
    return sections, why


def _clients_entry(ct: _Table, schema_clients: dict, drop: dict, comments: dict) -> dict:
    id_col, th = ct.roles["client_id"], ct.roles.get("therapist_id")
    found = identifying_columns(ct, {id_col})
    drop.update({c: f"{why} ({Path(ct.file).name})" for c, why in found.items()})
    entry: dict = {"path": ct.file}
    if ct.sheet is not None:
        entry["sheet"] = ct.sheet
    if id_col != "client_id":
        entry["client_id"] = id_col
    if th and "therapist_id" in schema_clients:
        entry["therapist_id"] = th
    entry["covariates"] = [c for c in ct.frame.columns if c not in found and c not in (id_col, th)]
    comments[("clients",)] = [f"{Path(ct.file).name}: one row per client (id column '{id_col}'), "
                              f"{len(ct.frame)} rows; every other column kept as a covariate"]
    return entry


def _table_entry(t: _Table, client_therapist: str | None, schema_clients: dict, comments: dict) -> dict:
    entry: dict = {"path": t.file}
    if t.sheet is not None:
        entry["sheet"] = t.sheet
    entry["respondent"] = t.respondent or (
        DECIDE + "who answered this table: client, therapist or observer? (or map a respondent column)")
    columns = {role: col for role, col in t.roles.items() if col != role}
    if "therapist_id" not in t.roles and not (client_therapist and "therapist_id" in schema_clients):
        where = (f"the client table's '{client_therapist}' is one, but this config version cannot take it "
                 "from there" if client_therapist else "no therapist column was found")
        columns["therapist_id"] = DECIDE + f"which column holds the therapist id? ({where}; add the column to this table)"
    if columns:
        entry["columns"] = columns
    roles = ", ".join(f"{r} = '{c}'" for r, c in t.roles.items())
    how = f"respondent {t.respondent} (from {t.respondent_why})" if t.respondent else "respondent not recognised"
    comments[("tables", t.name)] = [
        f"{Path(t.file).name}{'' if t.sheet is None else f', sheet {t.sheet}'}: {len(t.frame)} rows, "
        f"{len(t.frame.columns)} columns; {how}", f"roles: {roles}", *t.notes]
    return entry


def _instrument_entries(admin: list[_Table], keys: dict, comments: dict) -> tuple[dict, dict]:
    """The instrument entries, and entry -> the key proposed (decided or not) for the analyses."""
    entries: dict[str, dict] = {}
    proposed: dict[str, dict] = {}
    for t in admin:
        for inst in t.instruments:
            name = inst["entry"]
            if inst["key"] and t.respondent in ("therapist", "observer") and inst["key"].startswith("wai"):
                name = "wai_t" if t.respondent == "therapist" else "wai_o"
            base, i = name, 2
            while name in entries:
                name, i = f"{base}_{i}", i + 1
            span = f"{inst['columns'][0]}…{inst['columns'][-1]}"
            doc = keys.get(inst["key"] or "", {})
            if inst["key"] is None:
                key = DECIDE + f"which instrument are {span}? (keys that fit: {', '.join(inst['candidates'])})"
            elif inst["sure"].startswith("likely"):
                key = DECIDE + (f"are {span} the {doc.get('full_name')} ('{inst['key']}')? Only their count "
                                "and response range fit; write that key or another")
            else:
                key = inst["key"]
            entries[name] = {"key": key, "table": t.name, "items": _items_value(inst["stem"], inst["columns"])}
            proposed[name] = {"key": inst["key"], "table": t.name}
            why = ""
            if doc.get("licence_required") or doc.get("key_incomplete"):
                entries[name]["key_file"] = DECIDE + "needs the licence holder's key_file (a complete key for this form)"
                why = "; its key is not shipped (licence or incomplete key)"
            comments[("instruments", name)] = [
                f"{doc.get('full_name', 'unrecognised')}: {span} in {t.name} ({inst['sure']}){why}"]
    if not entries:  # the config needs one; ask for it where it goes
        entries["instrument_1"] = {
            "key": DECIDE + "which instrument key (shipped name, or key_file) scores this table's items?",
            "table": admin[0].name,
            "items": DECIDE + "the item columns: a pattern with {n} for the item number, or a list"}
        comments[("instruments", "instrument_1")] = ["no item columns matched a shipped key's names, count and range"]
    return entries, proposed


def _identifying_ids(tables: list[_Table]) -> list[str]:
    """Decisions for id columns whose values look identifying: the gate scans them too."""
    asks = []
    for t in tables:
        for role, column in t.roles.items() if t.kind != "unused" else ():
            hit = deid.scan_values(t.frame[column], role="id" if role.endswith("_id") else "data")
            if hit is not None:
                asks.append(DECIDE + f"'{column}' ({Path(t.file).name}, the {role}) holds values that look "
                            f"like a {hit[0]}; recode them, or replace this line by '{column}' to vouch for them")
    return asks


def draft(tables: list[_Table], keys: dict[str, dict]) -> tuple[dict, dict, dict]:
    """The config, the comments above its entries (path tuple -> lines), dropped column -> why."""
    comments: dict[tuple, list[str]] = dict(STUDY_COMMENTS)
    schema_clients = load_schema()["properties"]["clients"]["properties"]
    admin = [t for t in tables if t.kind == "administration"]
    ct = next((t for t in tables if t.kind == "clients"), None)
    config: dict = {"study": _study_section(),
                    "pseudonymisation": {"key_env": "ALLIANCE_ID_KEY", "key_file": None},
                    "tables": {}}
    drop: dict[str, str] = {}
    clients_entry = _clients_entry(ct, schema_clients, drop, comments) if ct is not None else None
    for t in admin:
        config["tables"][t.name] = _table_entry(t, ct.roles.get("therapist_id") if ct else None,
                                                schema_clients, comments)
        keep = set(t.roles.values()) | {c for i in t.instruments for c in i["columns"]}
        for c, why in identifying_columns(t, keep).items():
            drop.setdefault(c, f"{why} ({Path(t.file).name})")
    if clients_entry is not None:
        config["clients"] = clients_entry
    config["instruments"], proposed = _instrument_entries(admin, keys, comments)
    config["deid"] = {"drop_columns": sorted(drop), "allow_columns": _identifying_ids(tables)}
    comments[("deid", "drop_columns")] = [f"{c}: {why}" for c, why in sorted(drop.items())] or [
        "no column looked identifying"]
    sections, why = _analysis_sections(proposed, config["tables"], keys)
    config.update(sections)
    comments.update(why)
    return config, comments, drop


# --- writing ---------------------------------------------------------------------------------

def _dump(value, indent: int) -> list[str]:
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True, width=100)
    return [" " * indent + line for line in text.rstrip("\n").split("\n")]


def _emit(node: dict, comments: dict, path: tuple, indent: int) -> list[str]:
    lines = []
    for key, value in node.items():
        here = path + (key,)
        if indent == 0 and lines:
            lines.append("")  # a blank line between top-level sections
        for note in comments.get(here, []):
            lines.append(" " * indent + "# " + note)
        if isinstance(value, dict) and value:
            lines.append(" " * indent + _dump({key: None}, 0)[0].removesuffix(" null"))
            lines += _emit(value, comments, here, indent + 2)
        else:
            lines += _dump({key: value}, indent)
    return lines


def render_yaml(config: dict, comments: dict, files: list[str]) -> str:
    """The commented YAML text of a drafted config."""
    header = [f"# Drafted by `alliance init` on {_dt.date.today().isoformat()} from {len(files)} file(s):",
              *[f"#   {f}" for f in files],
              "# Check every entry; every key is documented in config/README.md.",
              "# Values starting with 'DECIDE:' are decisions still to make: `alliance validate` lists them.",
              "# The pseudonymisation key is read from the environment variable ALLIANCE_ID_KEY; keep it",
              "# outside the repository and results/."]
    body = _emit(config, comments, (), 0)
    text = "\n".join(header + [""] + body) + "\n"
    if yaml.safe_load(text) != config:  # the comments must never change what is read
        raise RuntimeError("the drafted YAML does not read back as the drafted config")
    return text


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the wizard ------------------------------------------------------------------------------

def classify(tables: list[_Table]) -> None:
    """Administration tables (a session column), the client table (one row per id), the rest."""
    for t in tables:
        t.roles = map_roles(t.frame.columns)
        if "session" in t.roles and "client_id" in t.roles:
            t.kind = "administration"
            _guess_respondent(t)
        elif "client_id" in t.roles and "session" not in t.roles and _unique_ids(t.frame, t.roles["client_id"]):
            t.kind = "clients"
            t.roles.pop("rater_id", None)
            t.roles.pop("days_since_intake", None)
    first_clients = next((t for t in tables if t.kind == "clients"), None)
    for t in tables:
        if t.kind == "clients" and t is not first_clients:
            t.kind = "unused"
            t.notes.append("a second table with one row per client; only the first is used")


def init_config(data_dir, output, *, force: bool = False) -> InitResult:
    """Draft a config for the table exports in a folder and write it as commented YAML.

    Parameters
    ----------
    data_dir : str or Path
        The folder of exports (CSV, TSV, TXT, Excel, SPSS .sav, Parquet), searched recursively.
    output : str or Path
        The config file to write.
    force : bool
        Overwrite ``output`` if it exists.

    Returns
    -------
    InitResult
        The config, the pending decisions and a transcript.

    Raises
    ------
    ValueError
        ``output`` exists without ``force``; the folder does not exist, is empty or holds no
        readable table with a client id and a session column (the skipped files are named).
    """
    data_dir, output = Path(data_dir), Path(output)
    if output.exists() and not force:
        raise ValueError(f"{output}: exists already; choose another file or pass --force to overwrite it")
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a folder")
    tables, skipped = read_folder(data_dir)
    classify(tables)
    reasons = "".join(f"\n  skipped {f}: {why}" for f, why in skipped)
    if not tables and not skipped:
        raise ValueError(f"{data_dir}: the folder holds no files")
    if not any(t.kind == "administration" for t in tables):
        unused = "".join(f"\n  not used {t.file}: no client id and session columns found (columns: "
                         f"{', '.join(map(str, t.frame.columns[:12]))})" for t in tables)
        raise ValueError(f"{data_dir}: no readable table with a client id and a session column{reasons}{unused}")
    keys = _shipped_keys()
    for t in tables:
        if t.kind == "administration":
            recognise(t, keys)
            _respondent_from_instruments(t, keys)
    config, comments, drop = draft(tables, keys)
    files = sorted({t.file for t in tables})
    text = render_yaml(config, comments, files)
    _write_atomic(output, text)
    decisions = pending_decisions(config)
    transcript = format_transcript(data_dir, output, tables, skipped, config, decisions, drop)
    return InitResult(config, decisions, transcript, output, skipped)


def format_transcript(data_dir, output, tables, skipped, config, decisions, drop_reasons=None) -> str:
    """What the wizard found and wrote, for a terminal: names, counts and shapes only.

    Parameters
    ----------
    data_dir, output : str or Path
        The folder read and the config written.
    tables : list
        The tables read (as classified by :func:`classify`).
    skipped : list of (str, str)
        Files (or sheets) not read, with the reason.
    config : dict
        The drafted config.
    decisions : list of str
        The pending decisions (:func:`pending_decisions`).
    drop_reasons : dict, optional
        Dropped column -> why it looks identifying.
    """
    def wrap(text: str, indent: str = "  ") -> str:
        return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent + "    ")

    lines = [f"alliance init: {data_dir} -> {output}", "", "Tables"]
    width = max(len(Path(t.file).name + (f" [{t.sheet}]" if t.sheet else "")) for t in tables)
    for t in tables:
        label = Path(t.file).name + (f" [{t.sheet}]" if t.sheet else "")
        lines.append(f"  {label:<{width}}  {len(t.frame):>7} rows  {len(t.frame.columns):>4} columns")
        if t.kind == "administration":
            who = (f"respondent {t.respondent} (from {t.respondent_why})" if t.respondent
                   else "respondent undecided")
            lines.append(wrap(f"-> table {t.name}, {who}", "      "))
            mapped = {r: c for r, c in t.roles.items() if r != c}
            if mapped:
                lines.append(wrap("columns: " + ", ".join(f"{r} <- {c}" for r, c in mapped.items()), "      "))
        elif t.kind == "clients":
            n = len(config.get("clients", {}).get("covariates", []))
            lines.append(wrap(f"-> the client table (id {t.roles['client_id']}; {n} covariate(s))", "      "))
        else:
            lines.append(wrap("-> not used: " + ("; ".join(t.notes) or "no client id and session columns"), "      "))
    for f, why in skipped:
        lines.append(wrap(f"skipped {f}: {why}"))
    lines += ["", "Instruments"]
    for entry, spec in config["instruments"].items():
        items = spec["items"] if isinstance(spec["items"], str) else f"{spec['items'][0]}…{spec['items'][-1]}"
        key = spec["key"] if not str(spec["key"]).startswith(DECIDE) else "?"
        lines.append(f"  {entry:<10} key {key:<9} table {spec['table']:<20} items {items}")
    for t in tables:
        for note in t.notes if t.kind == "administration" else []:
            lines.append(wrap(f"note ({t.name}): {note}"))
    if not config["instruments"]:
        lines.append("  none recognised")
    drop = config["deid"]["drop_columns"]
    lines += ["", f"Columns to drop before the de-identification gate ({len(drop)})"]
    lines += [wrap(f"{c}: {(drop_reasons or {}).get(c, 'looks identifying')}") for c in drop] or ["  none"]
    on = [s for s in ("ruptures", "agreement", "interrater") if config.get(s, {}).get("enabled")]
    off = [s for s in ("ruptures", "agreement", "interrater") if s not in on]
    lines += ["", "Analyses", f"  on: {', '.join(on) or 'none'}; off: {', '.join(off) or 'none'}",
              f"  models: {', '.join(config['models']['fits']) or 'none (no alliance and outcome instrument)'}"]
    lines += ["", f"Decisions left ({len(decisions)})"]
    lines += [wrap(d) for d in decisions] or ["  none"]
    lines += ["", f"Wrote {output}. Edit it, then run `alliance validate {output}`."]
    return "\n".join(lines)
