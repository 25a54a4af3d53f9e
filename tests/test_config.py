"""The config schema: defaults, unknown keys that name themselves, cross-references."""

import copy
from pathlib import Path

import pytest
import yaml

from alliance.config import load_config, validate_config
from alliance.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_shipped_config_is_valid_and_defaults_are_filled():
    config = load_config(ROOT / "config" / "config.yaml")
    assert config["deid"]["drop_columns"] == []
    minimal = copy.deepcopy(EXAMPLE)
    del minimal["deid"], minimal["pseudonymisation"]["key_env"]
    filled = validate_config(minimal)
    assert filled["pseudonymisation"]["key_env"] == "ALLIANCE_ID_KEY"


@pytest.mark.parametrize("path,bad,expected", [
    ((), "tabels", "'tabels' is not a known key (did you mean 'tables'?)"),
    (("study",), "sed", "at study: 'sed' is not a known key (did you mean 'seed'?)"),
    (("tables", "client_forms"), "pth", "at tables/client_forms: 'pth' is not a known key (did you mean 'path'?)"),
    (("instruments", "phq9"), "itmes", "'itmes' is not a known key (did you mean 'items'?)"),
])
def test_misspelt_key_names_itself(path, bad, expected):
    config = copy.deepcopy(EXAMPLE)
    node = config
    for p in path:
        node = node[p]
    node[bad] = 1
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert expected in str(err.value)


def test_wrong_types_and_values_are_reported_together():
    config = copy.deepcopy(EXAMPLE)
    config["study"]["seed"] = "abc"
    config["tables"]["client_forms"]["respondent"] = "patient"
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    text = str(err.value)
    assert "2 problem(s)" in text
    assert "at study/seed: 'abc' should be of type integer" in text
    assert "at tables/client_forms/respondent: 'patient' is not one of" in text


def test_cross_references():
    config = copy.deepcopy(EXAMPLE)
    config["instruments"]["phq9"]["table"] = "nowhere"
    del config["tables"]["therapist_forms"]["respondent"]
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert "'nowhere' is not a table" in str(err.value)
    assert "tables/therapist_forms: give 'respondent'" in str(err.value)


def test_item_pattern_needs_placeholder():
    config = copy.deepcopy(EXAMPLE)
    config["instruments"]["phq9"]["items"] = "phq"
    with pytest.raises(ConfigError, match="instruments/phq9/items"):
        validate_config(config)


def test_unreadable_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
