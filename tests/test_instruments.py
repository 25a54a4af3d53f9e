"""Instrument keys: every shipped key validates; broken keys and licence-required keys are
refused with messages that name the file, the key path and what to do."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from alliance.scoring.instruments import (
    INSTRUMENTS_DIR,
    SCHEMA_PATH,
    available_instruments,
    load_key,
    read_key_document,
)

SHIPPED = available_instruments()
USABLE = ["bdi_ii", "core_10", "core_om", "gad7", "oq45", "ors", "phq9", "srs", "wai_sr"]
NEEDS_USER_KEY = ["haq_ii", "wai_36", "wai_o_s", "wai_s", "wai_sr_t"]


def _document(name: str) -> dict:
    with open(INSTRUMENTS_DIR / f"{name}.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _write(tmp_path: Path, document: dict, name: str = "key.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def test_every_instrument_of_the_issue_is_shipped():
    assert sorted(USABLE + NEEDS_USER_KEY) == SHIPPED


def test_schema_is_a_valid_json_schema():
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        jsonschema.Draft202012Validator.check_schema(json.load(fh))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_key_validates_against_the_schema(name):
    document = read_key_document(INSTRUMENTS_DIR / f"{name}.yaml")
    assert document["name"] == name
    assert document["citations"], "every key cites its source"


@pytest.mark.parametrize("name", SHIPPED)
def test_no_key_holds_item_wording(name):
    # Keys are numbers and citations only: no scale label or note quotes an item.
    text = (INSTRUMENTS_DIR / f"{name}.yaml").read_text(encoding="utf-8").lower()
    for phrase in ("i feel", "i have felt", "i believe", "over the last"):
        assert phrase not in text


@pytest.mark.parametrize("name", USABLE)
def test_usable_keys_load(name):
    key = load_key(name)
    assert key.total_scale in key.scales
    all_items = set(key.scale_items(key.total_scale))
    assert all_items == set(range(1, key.n_items + 1)), "the total uses every item"


def test_published_facts_are_encoded():
    wai = load_key("wai_sr")
    assert wai.scales["task"].items == (1, 2, 10, 12)
    assert wai.scales["bond"].items == (3, 5, 7, 9)
    assert wai.scales["goal"].items == (4, 6, 8, 11)
    assert (wai.response_min, wai.response_max) == (1, 5)
    oq = load_key("oq45")
    assert oq.reverse_items == (1, 12, 13, 20, 21, 24, 31, 37, 43)
    assert [len(oq.scales[s].items) for s in ("sd", "ir", "sr")] == [25, 11, 9]
    assert oq.norm("total", "rci")["value"] == 14
    core = load_key("core_om")
    assert core.scales["total"].multiplier == 10 and core.scales["total"].scoring == "mean"
    assert [len(core.scales[s].items) for s in ("w", "p", "f", "r")] == [4, 12, 12, 6]
    phq, gad = load_key("phq9"), load_key("gad7")
    assert phq.norm("total", "programme")["reliable_change"] == 6
    assert phq.norm("total", "programme")["caseness"] == 10
    assert gad.norm("total", "programme")["reliable_change"] == 4
    assert gad.norm("total", "programme")["caseness"] == 8
    assert load_key("ors").norm("total", "cutoff")["value"] == 25
    assert load_key("srs").norm("total", "cutoff")["value"] == 36


@pytest.mark.parametrize("name", NEEDS_USER_KEY)
def test_licence_required_or_incomplete_keys_fail_clearly(name):
    with pytest.raises(ValueError) as err:
        load_key(name)
    message = str(err.value)
    assert f"{name}.yaml" in message
    assert "key_file" in message
    assert "cannot be scored with the shipped key" in message


def test_licence_holders_key_file_is_used(tmp_path):
    document = _document("wai_36")
    document.update(licence_required=False, reverse_items=[2, 5],
                    scales={"bond": {"items": list(range(1, 13))}, "task": {"items": list(range(13, 25))},
                            "goal": {"items": list(range(25, 37))},
                            "total": {"composite_of": ["bond", "task", "goal"]}},
                    total_scale="total",
                    missing_rule={"text": "none", "status": "primary", "source": "licence holder's key"})
    key = load_key("wai_36", key_file=_write(tmp_path, document))
    assert key.reverse_items == (2, 5)
    assert key.source_file.endswith("key.yaml")


def test_incomplete_key_file_is_refused(tmp_path):
    path = _write(tmp_path, _document("wai_36"))
    with pytest.raises(ValueError, match="must be a complete key"):
        load_key("wai_36", key_file=path)


def test_schema_violation_names_file_and_key_path(tmp_path):
    document = _document("phq9")
    document["scales"]["total"]["scoring"] = "median"
    document["response_max"] = "three"
    path = _write(tmp_path, document)
    with pytest.raises(ValueError) as err:
        load_key(path)
    message = str(err.value)
    assert str(path) in message
    assert "at scales/total/scoring" in message and "'median'" in message
    assert "at response_max" in message


def test_unknown_key_is_refused_with_the_known_keys(tmp_path):
    document = _document("gad7")
    document["reverse_itmes"] = [1]
    with pytest.raises(ValueError, match=r"at \(top level\): unknown key\(s\) \['reverse_itmes'\]"):
        load_key(_write(tmp_path, document))


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["scales"]["total"]["items"].append(10), "at scales/total/items/9: item 10 exceeds n_items 9"),
    (lambda d: d.update(reverse_items=[12]), "at reverse_items/0: item 12 exceeds n_items 9"),
    (lambda d: d.update(total_scale="sum"), "at total_scale: no scale named 'sum'"),
    (lambda d: d.update(response_min=3), "at response_min: 3 is not below response_max 3"),
    (lambda d: d["severity_bands"]["total"]["bands"].reverse(), "at severity_bands/total/bands: lower bounds"),
    (lambda d: d["norms"].update(totl={}), "at norms/totl: no scale named 'totl'"),
    (lambda d: d["scales"]["total"].update(max_missing=9), "at scales/total/max_missing: 9 leaves no item"),
])
def test_inconsistent_key_is_refused(tmp_path, mutate, expected):
    document = copy.deepcopy(_document("phq9"))
    mutate(document)
    with pytest.raises(ValueError) as err:
        load_key(_write(tmp_path, document))
    assert expected in str(err.value)


def test_complete_key_without_scales_is_refused(tmp_path):
    document = _document("phq9")
    del document["scales"]
    with pytest.raises(ValueError, match="'scales' is a required property"):
        load_key(_write(tmp_path, document))


def test_scale_needs_items_or_composite(tmp_path):
    document = _document("oq45")
    document["scales"]["total"]["items"] = [1, 2]
    with pytest.raises(ValueError, match="at scales/total: a scale needs exactly one of 'items' or 'composite_of'"):
        load_key(_write(tmp_path, document))


def test_unknown_instrument_lists_the_known_ones():
    with pytest.raises(ValueError, match="no instrument key named 'phq10'; known keys: .*phq9"):
        load_key("phq10")


def test_missing_key_file_is_reported(tmp_path):
    with pytest.raises(ValueError, match="instrument key file not found"):
        load_key("phq9", key_file=tmp_path / "nowhere.yaml")
