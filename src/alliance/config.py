"""Loading and validating the workflow configuration against its JSON schema."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from alliance.errors import ConfigError

from alliance import resources as _resources  # the workflow being run; see its docstring

SCHEMA_PATH = _resources.schema_path()


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_config(path: str | Path, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Read a YAML config file and validate it (see :func:`validate_config`)."""
    config = read_yaml_mapping(path, "config file", ConfigError)
    _refuse_templating_in(config, str(Path(path)))
    pending = pending_decisions(config)
    if pending:
        raise ConfigError(_format(str(Path(path)), [f"still to decide {line}" for line in pending]))
    return validate_config(config, schema_path, source=str(Path(path)))


DECIDE = "DECIDE: "


def pending_decisions(config, path: str = "") -> list[str]:
    """Every ``"DECIDE: <question>"`` left in a config, as ``at <path>: <question>`` lines.

    Parameters
    ----------
    config : dict, list or scalar
        A config (or part of one) as read from YAML.
    path : str
        The path of ``config`` within the whole config, ``/``-separated.

    Returns
    -------
    list of str
        One line per pending decision, in the config's order.
    """
    if isinstance(config, dict):
        return [line for key, value in config.items()
                for line in pending_decisions(value, f"{path}/{key}" if path else str(key))]
    if isinstance(config, list):
        return [line for i, value in enumerate(config) for line in pending_decisions(value, f"{path}/{i}")]
    if isinstance(config, str) and config.startswith(DECIDE):
        return [f"at {path}: {config[len(DECIDE):]}"]
    return []


YTE_MARKER = "__use_yte__"


def refuse_templating(path: str | Path) -> None:
    """Refuse a config file that asks for YTE templating (``__use_yte__`` at any level).

    A config is data: YTE would run Python code from it while Snakemake loads it. Call this
    on the raw file before Snakemake reads it (plain ``snakemake --configfile`` evaluates YTE
    while loading, before the workflow can refuse).

    Raises
    ------
    ConfigError
        Naming the file and where the marker is.
    """
    _refuse_templating_in(read_yaml_mapping(path, "config file", ConfigError), str(Path(path)))


def _refuse_templating_in(document: Any, source: str) -> None:
    where = _yte_markers(document, [])
    if where:
        raise ConfigError(
            f"{source}: YTE templating ({YTE_MARKER}) at {', '.join(where)} is not allowed: a config "
            "is data, not code. Write the values out, or generate the file with a script of your own."
        )


def _yte_markers(node: Any, path: list) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == YTE_MARKER:
                found.append(_where(path) if path else "(top level)")
            found.extend(_yte_markers(value, [*path, key]))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found.extend(_yte_markers(value, [*path, n]))
    return found


def read_yaml_mapping(path: str | Path, what: str, error: type[ValueError] = ValueError) -> dict:
    """A YAML file whose top level is a mapping; ``error`` names the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as fh:
            document = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    if not isinstance(document, dict):
        raise error(f"{path}: expected a mapping of keys at the top level")
    return document


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH, source: str = "config") -> dict:
    """Validate ``config`` against the schema and return a copy with defaults filled in.

    Every violation is reported at once; an unknown key names itself and the closest known
    key, so that a misspelling reads as one (``'tabels' is not a known key ... did you mean
    'tables'?``). Cross-references (an instrument's table) are checked as well.
    """
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    messages = [_describe(err, schema) for err in validator.iter_errors(config)]
    if messages:
        raise ConfigError(_format(source, sorted(set(messages))))
    resolved = copy.deepcopy(config)
    _fill_defaults(resolved, schema)
    problems = _cross_references(resolved)
    if problems:
        raise ConfigError(_format(source, problems))
    return resolved


def _format(source: str, messages: list[str]) -> str:
    return f"{source}: {len(messages)} problem(s) in the configuration\n" + "\n".join(
        f"  - {m}" for m in messages
    )


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def _describe(err: jsonschema.ValidationError, schema: dict) -> str:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in known]
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
            parts.append(f"at {where}: '{key}' is not a known key{hint}")
        return "; ".join(parts)
    if err.validator == "required":
        return f"at {where}: {err.message}"
    if err.validator == "enum":
        return f"at {where}: {err.instance!r} is not one of {err.validator_value}"
    if err.validator == "type":
        return f"at {where}: {err.instance!r} should be of type {err.validator_value}"
    if err.validator == "oneOf" and where.endswith("/items"):
        return (f"at {where}: {err.instance!r} is neither a pattern with {{n}} standing for the item "
                "number (e.g. 'wai{n}') nor a list of column names")
    return f"at {where}: {err.message}"


def _fill_defaults(node: Any, schema: dict) -> None:
    if not isinstance(node, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            _fill_defaults(node[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in node.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def _cross_references(config: dict) -> list[str]:
    problems = []
    tables = config.get("tables", {})
    for name, entry in config.get("instruments", {}).items():
        if entry["table"] not in tables:
            problems.append(
                f"at instruments/{name}/table: '{entry['table']}' is not a table under tables: "
                f"(known: {', '.join(tables)})"
            )
        items = entry["items"]
        if isinstance(items, str):
            others = sorted(set(re.findall(r"\{[^}]*\}", items)) - {"{n}"})
            if others:
                problems.append(f"at instruments/{name}/items: {', '.join(others)} is not a placeholder; "
                                "only {n} (the item number) is")
    for name, table in tables.items():
        if "respondent" not in table and "respondent" not in table.get("columns", {}):
            problems.append(
                f"at tables/{name}: give 'respondent' (client, therapist or observer) or map a "
                "'respondent' column under columns:"
            )
    return problems
