"""Instrument scoring keys as data: one YAML file per instrument in ``config/instruments/``.

A key says how many items an instrument has, their response range, which items are
reverse-keyed, which items form each scale, how each scale is scored (sum or mean, a
multiplier such as the CORE clinical score's x 10), how many missing items may be prorated,
the direction of the scale and the published norms, each with its source. Keys never hold item
wording. A key is validated against ``config/instruments/schema.json`` (JSON Schema 2020-12)
and then for consistency (items within 1..n_items, scales that exist, ...); every problem is
reported with the file and the key path.

Keys whose scoring key is distributed by a licence holder (``licence_required: true``) or is
not documented in public sources (``key_incomplete``) are shipped without the missing parts;
loading them needs the user's own key file (``key_file:`` in the config), which uses the same
schema and replaces the shipped key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from alliance.config import read_yaml_mapping

from alliance import resources as _resources  # the workflow being run; see its docstring






INSTRUMENTS_DIR = _resources.instruments_dir()
SCHEMA_PATH = INSTRUMENTS_DIR / "schema.json"

RULES = (">=", ">", "<=", "<")


@dataclass(frozen=True)
class ScaleKey:
    """How one scale (total or subscale) of an instrument is scored."""

    name: str
    label: str
    items: tuple[int, ...]
    scoring: str = "sum"
    multiplier: float = 1.0
    max_missing: int = 0
    proration: str = "mean"
    composite_of: tuple[str, ...] = ()

    @property
    def is_composite(self) -> bool:
        return bool(self.composite_of)


@dataclass(frozen=True)
class InstrumentKey:
    """A validated scoring key (see ``config/instruments/schema.json`` for every field).

    ``scales`` keeps the order of the key file. ``norms`` and ``severity_bands`` are the plain
    mappings of the key file, keyed by scale name. ``items`` of a composite scale are the union
    of its components' items (used for internal consistency).
    """

    name: str
    full_name: str
    citations: tuple[str, ...]
    respondents: tuple[str, ...]
    n_items: int
    response_min: float
    response_max: float
    integer_responses: bool
    responses_prescored: bool
    reverse_items: tuple[int, ...]
    direction: str
    scales: dict[str, ScaleKey]
    total_scale: str
    missing_rule: dict[str, Any]
    norms: dict[str, Any] = field(default_factory=dict)
    severity_bands: dict[str, Any] = field(default_factory=dict)
    licence: dict[str, Any] = field(default_factory=dict)
    source_file: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher_is_better"

    def scale_items(self, scale: str) -> tuple[int, ...]:
        """Items (1-based) of ``scale``; for a composite scale, the union of its parts."""
        key = self.scales[scale]
        if not key.is_composite:
            return key.items
        items: list[int] = []
        for part in key.composite_of:
            items.extend(self.scale_items(part))
        return tuple(sorted(set(items)))

    def norm(self, scale: str, what: str) -> dict[str, Any] | None:
        """The published norm ``what`` (``rci``, ``cutoff``, ``reliability``, ...) of ``scale``."""
        return self.norms.get(scale, {}).get(what)


def available_instruments(directory: str | Path | None = None) -> list[str]:
    """Names of the keys shipped in ``directory`` (default ``config/instruments/``), sorted.

    Licence-required and incomplete keys are listed too; :func:`load_key` tells which of them
    need a user-supplied key file.
    """
    directory = Path(directory) if directory is not None else INSTRUMENTS_DIR
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_key(name_or_path: str | Path, key_file: str | Path | None = None,
             directory: str | Path | None = None) -> InstrumentKey:
    """Load, validate and return an instrument's scoring key.

    Parameters
    ----------
    name_or_path
        A key name (``"wai_sr"``: read ``config/instruments/wai_sr.yaml``) or the path of a
        YAML key file.
    key_file
        A user-supplied key file (``key_file:`` of the instrument's config entry), for example
        a licence holder's key. It uses the same schema and replaces the shipped key.
    directory
        Where the shipped keys are (default ``config/instruments/``).

    Returns
    -------
    InstrumentKey

    Raises
    ------
    ValueError
        When the file is missing or not YAML, breaks the schema or is inconsistent (the
        message names the file and the key path), or when the shipped key needs the licence
        holder's key (``licence_required``) or is incomplete and no ``key_file`` was given
        (the message says where to put that key).
    """
    if key_file is not None:
        try:
            shipped = _resolve(name_or_path, directory)
        except ValueError:  # a user's key for an instrument that is not shipped
            shipped = Path(key_file)
        path = Path(key_file)
        document = read_key_document(path)
        _refuse_unusable(document, path, shipped_path=shipped, via_key_file=True)
        return _build(document, path)
    shipped = _resolve(name_or_path, directory)
    document = read_key_document(shipped)
    _refuse_unusable(document, shipped, shipped_path=shipped, via_key_file=False)
    return _build(document, shipped)


def read_key_document(path: str | Path) -> dict[str, Any]:
    """Read a key file and validate it (schema and consistency) without building a key.

    Licence-required and incomplete keys validate here; :func:`load_key` refuses to score them.

    Raises
    ------
    ValueError
        Naming the file and every offending key path.
    """
    path = Path(path)
    document = read_yaml_mapping(path, "instrument key file")
    problems = schema_problems(document) or consistency_problems(document)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(f"{path}: {len(problems)} problem(s) in the instrument key\n{lines}")
    return document


def schema_problems(document: Mapping[str, Any]) -> list[str]:
    """Every violation of ``schema.json``, as ``at <key path>: <message>``."""
    validator = jsonschema.Draft202012Validator(_schema())
    problems = []
    for err in validator.iter_errors(document):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        problems.append(f"at {where}: {_message(err)}")
    return sorted(set(problems))


def consistency_problems(document: Mapping[str, Any]) -> list[str]:
    """Problems the schema cannot express: item numbers, scale references, ranges, bands."""
    problems: list[str] = []
    n_items = document.get("n_items")
    lo, hi = document.get("response_min"), document.get("response_max")
    if lo is not None and hi is not None and not lo < hi:
        problems.append(f"at response_min: {lo} is not below response_max {hi}")
    for i, item in enumerate(document.get("reverse_items") or []):
        if n_items is not None and item > n_items:
            problems.append(f"at reverse_items/{i}: item {item} exceeds n_items {n_items}")
    scales = document.get("scales") or {}
    for name, scale in scales.items():
        for i, item in enumerate(scale.get("items", [])):
            if n_items is not None and item > n_items:
                problems.append(f"at scales/{name}/items/{i}: item {item} exceeds n_items {n_items}")
        for i, part in enumerate(scale.get("composite_of", [])):
            if part not in scales:
                problems.append(f"at scales/{name}/composite_of/{i}: no scale named '{part}'")
            elif "composite_of" in scales[part]:
                problems.append(f"at scales/{name}/composite_of/{i}: '{part}' is itself a composite")
        n_scale_items = len(scale.get("items", []))
        if scale.get("max_missing", 0) >= max(n_scale_items, 1) and "items" in scale:
            problems.append(f"at scales/{name}/max_missing: {scale['max_missing']} leaves no item answered "
                            f"(the scale has {n_scale_items})")
    total = document.get("total_scale")
    if total is not None and total not in scales:
        problems.append(f"at total_scale: no scale named '{total}'")
    for section in ("norms", "severity_bands"):
        for name in document.get(section) or {}:
            if name not in scales:
                problems.append(f"at {section}/{name}: no scale named '{name}'")
    for name, bands in (document.get("severity_bands") or {}).items():
        mins = [b["min"] for b in bands.get("bands", [])]
        if mins != sorted(mins) or len(set(mins)) != len(mins):
            problems.append(f"at severity_bands/{name}/bands: lower bounds must increase ({mins})")
    return problems


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in known]
        return f"unknown key(s) {unknown}; known keys: {', '.join(known)}"
    first_branch = (err.schema.get("oneOf") or [{}])[0] if err.validator == "oneOf" else {}
    if "items" in first_branch.get("required", []):  # the scale definition's items/composite_of choice
        return "a scale needs exactly one of 'items' or 'composite_of'"
    return err.message


def _resolve(name_or_path: str | Path, directory: str | Path | None) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    directory = Path(directory) if directory is not None else INSTRUMENTS_DIR
    path = directory / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(available_instruments(directory)) or "(none)"
        raise ValueError(f"{path}: no instrument key named '{name_or_path}'; known keys: {known}")
    return path


def _refuse_unusable(document: Mapping[str, Any], path: Path, shipped_path: Path, via_key_file: bool) -> None:
    reasons = []
    if document.get("licence_required"):
        holder = document.get("licence", {}).get("holder", "its licence holder")
        reasons.append(f"its scoring key is distributed by {holder} and is not shipped")
    if document.get("key_incomplete"):
        reasons.append(f"its key is incomplete: {document['key_incomplete']}")
    if not reasons:
        return
    name = document.get("name", path.stem)
    if via_key_file:
        raise ValueError(
            f"{path}: the key file given for '{name}' cannot score: {'; '.join(reasons)}. "
            "A key_file must be a complete key: licence_required: false, key_incomplete: null, "
            "with reverse_items, scales, total_scale and missing_rule filled in.")
    how = document.get("licence", {}).get("how_to_obtain", "")
    raise ValueError(
        f"{path}: instrument '{name}' cannot be scored with the shipped key: {'; '.join(reasons)}. "
        f"Put the licence holder's (or your documented) key in a YAML file with the schema of "
        f"{SCHEMA_PATH.name} (copy {shipped_path} and fill it in) and name it with "
        f"'key_file: path/to/{name}_key.yaml' under this instrument's entry in the config "
        f"(instruments: <entry>: key_file:). {how}".strip())


def _build(document: Mapping[str, Any], path: Path) -> InstrumentKey:
    scales = {
        name: ScaleKey(
            name=name,
            label=spec.get("label", name),
            items=tuple(spec.get("items", ())),
            scoring=spec.get("scoring", "sum"),
            multiplier=float(spec.get("multiplier", 1)),
            max_missing=int(spec.get("max_missing", 0)),
            proration=spec.get("proration", "mean"),
            composite_of=tuple(spec.get("composite_of", ())),
        )
        for name, spec in document["scales"].items()
    }
    return InstrumentKey(
        name=document["name"],
        full_name=document["full_name"],
        citations=tuple(document["citations"]),
        respondents=tuple(document["respondents"]),
        n_items=int(document["n_items"]),
        response_min=float(document["response_min"]),
        response_max=float(document["response_max"]),
        integer_responses=bool(document.get("integer_responses", True)),
        responses_prescored=bool(document.get("responses_prescored", False)),
        reverse_items=tuple(document["reverse_items"]),
        direction=document["direction"],
        scales=scales,
        total_scale=document["total_scale"],
        missing_rule=dict(document["missing_rule"]),
        norms=dict(document.get("norms") or {}),
        severity_bands=dict(document.get("severity_bands") or {}),
        licence=dict(document.get("licence") or {}),
        source_file=str(path),
    )


def keys_from_config(config: Mapping[str, Any], directory: str | Path | None = None) -> dict[str, InstrumentKey]:
    """Config entry name -> key, for every entry under ``instruments:`` (``key``, ``key_file``).

    Raises the :func:`load_key` errors, prefixed with the config entry that caused them.
    """
    keys = {}
    for entry, spec in config["instruments"].items():
        try:
            keys[entry] = load_key(spec["key"], key_file=spec.get("key_file"), directory=directory)
        except ValueError as err:
            raise ValueError(f"instruments: {entry}: {err}") from None
    return keys



def instrument_key_paths(config: dict) -> list[str]:
    """The key files the configured instruments are scored with, relative to the working folder."""
    import os

    from alliance.scoring.instruments import INSTRUMENTS_DIR

    paths = set()
    for spec in config["instruments"].values():
        shipped = INSTRUMENTS_DIR / f"{spec['key']}.yaml"
        # A key file of one's own stands alone: its key name need not be a shipped one.
        if not spec.get("key_file") or shipped.exists():
            paths.add(os.path.relpath(shipped))
        if spec.get("key_file"):
            paths.add(spec["key_file"])
    return sorted(paths)


# --------------------------------------------------------------------------------------
# Display names (tables, figures and text name instruments and scales alike)
# --------------------------------------------------------------------------------------
_ABBREVIATION_AT_END = re.compile(r"\(([^()\s]+)\)\s*$")


def instrument_abbreviation(entry: str, key: Any) -> str:
    """Short name of an instrument: the abbreviation closing its full name ("Patient Health
    Questionnaire-9 (PHQ-9)" -> "PHQ-9"), else the config entry in capitals ("wai_sr" ->
    "WAI-SR")."""
    match = _ABBREVIATION_AT_END.search(getattr(key, "full_name", "") or "")
    return match.group(1) if match else entry.upper().replace("_", "-")


def scale_display(entry: str, scale: str | None, key: Any) -> str:
    """An instrument's scale as a reader knows it: ``PHQ-9 total``, ``OQ-45.2 Symptom Distress``
    (the key's scale label; the scale code when the key does not know it)."""
    scales = getattr(key, "scales", None) or {}
    label = scales[scale].label if scale in scales else (scale or "")
    if label.lower() == "total":
        label = "total"
    return f"{instrument_abbreviation(entry, key)} {label}".strip()


def measure_display(measure: Sequence[Any], keys: Mapping[str, Any]) -> str:
    """A measure ``(instrument, respondent, scale)`` as a reader knows it: ``client-rated
    WAI-SR total``, ``PHQ-9 total`` (no respondent)."""
    instrument, respondent, scale = measure
    text = scale_display(instrument, scale, keys.get(instrument))
    return f"{respondent}-rated {text}" if respondent else text


def instrument_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """Config entry -> the instrument's short name (:func:`instrument_abbreviation`), every entry
    under ``instruments:``."""
    return {entry: instrument_abbreviation(entry, key) for entry, key in keys_from_config(config).items()}
