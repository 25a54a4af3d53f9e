"""The de-identification gate and keyed pseudonymisation."""

import hashlib
import hmac

import pandas as pd
import pytest

from alliance.data.deid import load_id_key, normalise_ids, pseudonymise, refuse_identifiers, scan_table
from alliance.errors import IdentifierError

BASE = pd.DataFrame({
    "client_id": [f"P{i:03d}" for i in range(12)],
    "therapist_id": ["TH1"] * 6 + ["TH2"] * 6,
    "session": [str(i % 3 + 1) for i in range(12)],
    "wai1": ["4"] * 12,
    "arm": ["CBT", "PDT"] * 6,
})


def kinds(frame):
    return {f.column: f.kind for f in scan_table(frame, "f.csv")}


@pytest.mark.parametrize("column,kind", [
    ("email", "contact detail"), ("E-Mail", "contact detail"), ("phone_number", "contact detail"),
    ("first_name", "name"), ("Surname", "name"), ("postcode", "postcode"), ("zip", "postcode"),
    ("date_of_birth", "calendar date"), ("session_date", "calendar date"), ("DOB", "calendar date"),
    ("therapist_notes", "free-text note"), ("comments", "free-text note"), ("nhs_number", "record number"),
])
def test_identifier_column_names_are_found(column, kind):
    found = kinds(BASE.assign(**{column: "x"}))
    assert found[column].startswith(kind)


@pytest.mark.parametrize("values,kind", [
    (["anna@example.org"] + ["-"] * 11, "contact detail (e-mail address)"),
    (["+44 20 7946 0958"] + ["-"] * 11, "contact detail (phone number)"),
    (["SW1A 1AA"] + ["-"] * 11, "postcode"),
    (["2024-03-05"] + ["-"] * 11, "calendar date"),
    (["05.03.2024"] + ["-"] * 11, "calendar date"),
    (["3 March 2024"] + ["-"] * 11, "calendar date"),
    (["client said she felt much better after the last session"] + ["-"] * 11, "free-text note"),
    ([f"{f} {l}" for f, l in zip("Anna Ben Carl Dora Emil Fay Gus Hana Ivan Jon Kim Lea".split(),
                                 "Smith Jones Brown Lee Wong Diaz Kahn Berg Ruiz Moss Hart Nash".split())], "name or free-text note"),
])
def test_identifier_values_are_found_in_innocent_columns(values, kind):
    found = kinds(BASE.assign(code=values))
    assert set(found) == {"code"} and found["code"].startswith(kind)


def test_clean_table_passes_and_rows_are_reported():
    assert kinds(BASE) == {}
    frame = BASE.assign(code=["-"] * 4 + ["x@y.com"] + ["-"] * 7)
    (finding,) = scan_table(frame, "f.csv")
    assert finding.rows == (6,)  # header is row 1
    assert "x@y.com" not in str(finding) and "x@x.xxx" in str(finding)


def test_excel_date_cells_are_refused():
    frame = BASE.assign(when=pd.to_datetime(["2024-01-01"] * 12))
    assert kinds(frame) == {"when": "calendar date"}


def test_gate_names_every_file_and_column_and_honours_drop():
    tables = {"a.csv": BASE.assign(email="a@b.cd"), "b.csv": BASE.assign(notes="x")}
    with pytest.raises(IdentifierError) as err:
        refuse_identifiers(tables)
    text = str(err.value)
    assert "a.csv, column 'email'" in text and "b.csv, column 'notes'" in text
    assert "drop_columns" in text
    report = refuse_identifiers({"a.csv": BASE.assign(email="a@b.cd").drop(columns="email")})
    assert report["a.csv"]["columns_scanned"] == len(BASE.columns)


def test_allow_columns_skips_the_value_scan_only():
    frame = BASE.assign(code=["12.03.2024"] * 12)
    assert scan_table(frame, "f", allow_columns=["code"]) == []
    assert scan_table(BASE.assign(email="x"), "f", allow_columns=["email"])  # names still refused


def test_pseudonyms_are_keyed_hmacs():
    key = b"0123456789abcdef-test"
    ids = pd.Series(["P001", " P001 ", "P002", None, 17.0])
    got = pseudonymise(ids, "client", key)
    expected = "C-" + hmac.new(key, b"client:P001", hashlib.sha256).hexdigest()[:12]
    assert got.iloc[0] == expected == got.iloc[1]  # whitespace does not make a new person
    assert got.iloc[2] != expected and got.iloc[3] is None
    assert got.iloc[4] == "C-" + hmac.new(key, b"client:17", hashlib.sha256).hexdigest()[:12]
    assert pseudonymise(ids, "client", b"another-key-0123456").iloc[0] != expected
    assert pseudonymise(pd.Series(["P001"]), "therapist", key).iloc[0].startswith("T-")


def test_normalise_ids():
    assert normalise_ids(pd.Series([" a ", "", 3.0, 3.5])).tolist() == ["a", None, "3", "3.5"]


def test_key_from_env_wins_over_file(tmp_path, monkeypatch):
    path = tmp_path / "key.txt"
    path.write_text("# demo key\nabcdefghijklmnopqrstuvwxyz\n")
    monkeypatch.delenv("ALLIANCE_TEST_KEY", raising=False)
    assert load_id_key("ALLIANCE_TEST_KEY", str(path)) == b"abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("ALLIANCE_TEST_KEY", "from-the-environment-1234")
    assert load_id_key("ALLIANCE_TEST_KEY", str(path)) == b"from-the-environment-1234"
    monkeypatch.delenv("ALLIANCE_TEST_KEY")
    with pytest.raises(ValueError, match="no pseudonymisation key"):
        load_id_key("ALLIANCE_TEST_KEY", None)
    path.write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 16"):
        load_id_key("ALLIANCE_TEST_KEY", str(path))


def test_unmapped_columns_are_listed_or_refused_by_name_only():
    report = refuse_identifiers({"a.csv": BASE}, unmapped={"a.csv": ["Vorname"]})
    assert report["a.csv"]["columns_dropped_unmapped"] == ["Vorname"]
    with pytest.raises(IdentifierError, match=r"a\.csv, column 'Vorname': looks like a column the config does not map"):
        refuse_identifiers({"a.csv": BASE}, unmapped={"a.csv": ["Vorname"]}, refuse_unmapped=True)


def test_roles_decide_what_a_value_may_be():
    from alliance.data.deid import scan_values

    names = pd.Series(["anna", "anna", "ben", "ben"])
    assert scan_values(names, "id")[0] == "name"  # ids must look like codes
    assert scan_values(names, "covariate") is None  # a repeated word is a category
    once = pd.Series(["waiting list", "CBT group", "CBT group"])
    assert scan_values(once, "covariate")[0].startswith("name or free-text note")
    assert scan_values(once, "text") is None  # declared text
    with pytest.raises(ValueError, match="role must be one of"):
        scan_values(names, "item")
