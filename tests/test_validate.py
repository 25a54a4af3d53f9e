"""Validation rules of the data contract, each with its message."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from alliance.errors import InputError
from alliance.data.validate import therapist_switches, validate_study

KEYS = {"wai": SimpleNamespace(n_items=3, response_min=1, response_max=5),
        "obs": SimpleNamespace(n_items=2, response_min=1, response_max=7)}
CONFIG = {
    "tables": {"forms": {"path": "forms.csv", "respondent": "client"},
               "coding": {"path": "coding.csv", "respondent": "observer"}},
    "instruments": {"wai": {"key": "k", "table": "forms", "items": "wai{n}"},
                    "obs": {"key": "k", "table": "coding", "items": ["o_a", "o_b"]}},
}
FILES = {"forms": "forms.csv", "coding": "coding.csv"}


def forms(changes=None):
    frame = pd.DataFrame({
        "client_id": ["P1", "P1", "P2", "P2"],
        "therapist_id": ["TH1", "TH1", "TH2", "TH2"],
        "session": ["1", "2", "1", "2"],
        "days_since_intake": ["0", "7", "0", "8"],
        "wai1": ["4", "5", None, "3"],
        "wai2": ["4", "5", "2", "3"],
        "wai3": ["1", "5", "2", "3"],
    }, dtype=object)
    for (col, row), value in (changes or {}).items():
        frame.loc[row, col] = value
    return frame


def coding(changes=None):
    frame = pd.DataFrame({"client_id": ["P1", "P1"], "therapist_id": ["TH1", "TH1"], "session": ["1", "1"],
                          "rater_id": ["coder_A", "coder_B"], "o_a": ["4", "6"], "o_b": ["5", "7"]}, dtype=object)
    for (col, row), value in (changes or {}).items():
        frame.loc[row, col] = value
    return frame


def problems(f=None, c=None):
    frames = {"forms": forms() if f is None else f, "coding": coding() if c is None else c}
    with pytest.raises(InputError) as err:
        validate_study(frames, CONFIG, KEYS, FILES)
    return err.value.problems, str(err.value)


def test_valid_study_passes():
    result = validate_study({"forms": forms(), "coding": coding()}, CONFIG, KEYS, FILES)
    assert result.therapist_switches.empty


def test_item_out_of_range_names_file_row_column_value_and_range():
    found, text = problems(forms({("wai2", 1): "9"}))
    (p,) = found
    assert (p.file, p.row, p.column, p.value) == ("forms.csv", 3, "wai2", "9")
    assert "a number from 1 to 5" in p.expected
    assert "forms.csv, row 3, column 'wai2': value 9; expected a number from 1 to 5" in text


def test_every_problem_is_reported_at_once():
    found, _ = problems(forms({("wai1", 0): "0", ("wai3", 3): "six", ("session", 2): "0"}),
                        coding({("o_b", 1): "8"}))
    where = {(p.file, p.row, p.column) for p in found}
    assert where == {("forms.csv", 2, "wai1"), ("forms.csv", 5, "wai3"), ("forms.csv", 4, "session"),
                     ("coding.csv", 3, "o_b")}


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "first", None])
def test_session_must_be_a_positive_whole_number(value):
    found, _ = problems(forms({("session", 1): value}))
    assert [(p.row, p.column) for p in found if p.column == "session"] == [(3, "session")]


def test_days_since_intake_must_not_be_a_date():
    found, _ = problems(forms({("days_since_intake", 1): "2024-01-01"}))
    assert found[0].column == "days_since_intake" and "never a date" in found[0].expected


def test_missing_columns_are_named():
    found, _ = problems(forms().drop(columns=["wai3", "session"]))
    assert {p.column for p in found} == {"wai3", "session"}
    assert all("this column in the file" in p.expected for p in found)


def test_client_without_therapist():
    found, _ = problems(forms({("therapist_id", 2): None}))
    (p,) = found
    assert p.row == 4 and p.column == "therapist_id" and "every client needs a therapist" in p.expected


def test_observer_row_without_rater():
    found, _ = problems(c=coding({("rater_id", 1): None}))
    assert [(p.file, p.row, p.column) for p in found] == [("coding.csv", 3, "rater_id")]


def test_duplicated_administrations():
    frame = pd.concat([forms(), forms().iloc[[1]]], ignore_index=True)
    found, _ = problems(frame)
    (p,) = found
    assert p.row == 6 and "row 3 has the same" in p.expected
    # two coders on the same session are not duplicates, the same coder twice is
    found, _ = problems(c=coding({("rater_id", 1): "coder_A"}))
    assert [p.row for p in found] == [3]


def test_ids_that_differ_only_in_case_are_refused_whitespace_is_stripped():
    found, text = problems(forms({("client_id", 2): "p2"}))
    (p,) = [p for p in found if p.column == "client_id"]
    assert p.file == "forms.csv" and p.value is None and "upper/lower case" in p.expected
    assert "rows 4, 5" in p.expected and "p2" not in text and "P2" not in text
    result = validate_study({"forms": forms({("client_id", 2): " P2 "}), "coding": coding()}, CONFIG, KEYS, FILES)
    assert any("surrounding spaces" in n for n in result.notes)


@pytest.mark.parametrize("variant, reason", [
    ("0002", "leading zeros"), ("P\u200b2", "invisible characters"), ("P\u00ad2", "invisible characters"),
    ("\u0420" + "2", "look-alike letters"),  # Cyrillic Er for Latin P
])
def test_ids_that_differ_only_invisibly_are_refused_naming_rows_not_ids(variant, reason):
    base = forms().assign(client_id=["P1", "P1", "2", "2"]) if variant == "0002" else forms()
    found, text = problems(base.assign(client_id=base["client_id"].where(base.index != 3, variant)))
    refused = [p for p in found if p.column == "client_id"]
    assert refused and all(p.file == "forms.csv" and p.row is None for p in refused)
    assert any(reason in p.expected and "rows 4, 5" in p.expected for p in refused), text
    assert variant not in text


@pytest.mark.parametrize("same", [19.0, "19.0", " 19 ", b"19", np.int64(19)])
def test_excel_bytes_and_spaced_ids_are_one_client(same):
    frame = forms().assign(client_id=pd.Series(["P1", "P1", "19", same], dtype=object))
    result = validate_study({"forms": frame, "coding": coding()}, CONFIG, KEYS, FILES)
    assert result.therapist_switches.empty
    # the same id after normalisation twice in one session is a duplicate
    found, _ = problems(frame.assign(session=["1", "2", "1", "1"]))
    assert [(p.row, p.value) for p in found] == [(5, None)]


def test_duplicate_and_case_messages_never_print_the_ids():
    ssn = "123-45-6789"
    frame = forms().assign(client_id=["Anna Schmidt", "Anna Schmidt", ssn, ssn], session=["1", "1", "1", "1"])
    found, text = problems(frame)
    assert [p.row for p in found] == [3, 5] and "row 2 has the same client_id, session" in found[0].expected
    assert "Anna" not in text and ssn not in text


def test_text_in_an_item_column_is_described_not_printed():
    found, text = problems(forms({("wai3", 1): "Anna Schmidt"}))
    assert found[0].value == "Anna Schmidt"  # kept on the Problem for tests, never in the message
    assert "column 'wai3': value is a text of 12 characters (letters, spaces); expected" in text
    assert "Anna" not in text


@pytest.mark.parametrize("column, value", [
    ("session", "inf"), ("session", "Infinity"), ("session", "-inf"), ("session", "nan"), ("session", "1e19"),
    ("session", 1e19), ("session", float("inf")), ("session", "10001"),
    ("days_since_intake", "inf"), ("days_since_intake", 1e19), ("days_since_intake", "36501"),
])
def test_non_finite_or_absurd_sessions_and_days_are_refused(column, value):
    found, text = problems(forms({(column, 1): value}))
    assert [(p.file, p.row, p.column) for p in found] == [("forms.csv", 3, column)], text
    assert ("10,000" if column == "session" else "36,500") in found[0].expected
    ok = forms({("session", 1): "10000", ("days_since_intake", 1): "36500"})
    validate_study({"forms": ok, "coding": coding()}, CONFIG, KEYS, FILES)


def with_therapists_in_client_table(coding_frame, clients):
    config = dict(CONFIG, clients={"path": "clients.csv", "client_id": "client_id", "therapist_id": "therapist",
                                   "covariates": []})
    return validate_study({"forms": forms(), "coding": coding_frame}, config, KEYS, FILES, clients, "clients.csv")


def test_observer_ratings_may_take_the_therapist_from_the_client_table():
    clients = pd.DataFrame({"client_id": ["P1", "P2"], "therapist": ["TH1", "TH2"]})
    result = with_therapists_in_client_table(coding().drop(columns="therapist_id"), clients)
    assert result.therapist_switches.empty
    with pytest.raises(InputError) as err:  # a client of the ratings without a therapist there
        with_therapists_in_client_table(coding().drop(columns="therapist_id"), clients.iloc[[1]])
    (p,) = [p for p in err.value.problems if p.file == "coding.csv"]
    assert p.column == "client_id" and "rows 2, 3" in p.expected and "clients.csv" in p.expected
    with pytest.raises(InputError, match="column 'therapist_id'"):  # without the mapping it is refused
        validate_study({"forms": forms(), "coding": coding().drop(columns="therapist_id")}, CONFIG, KEYS, FILES)


def test_client_table_ids_that_match_no_form():
    config = dict(CONFIG, clients={"path": "clients.csv", "client_id": "client_id", "covariates": ["arm"]})
    frames = {"forms": forms(), "coding": coding()}
    with pytest.raises(InputError) as err:  # 0019-style and lower-case ids would silently lose covariates
        validate_study(frames, config, KEYS, FILES, pd.DataFrame({"client_id": ["p1", "P2"], "arm": ["a", "b"]}),
                       "clients.csv")
    assert any(p.file == "clients.csv" and "upper/lower case" in p.expected for p in err.value.problems)
    result = validate_study(frames, config, KEYS, FILES,
                            pd.DataFrame({"client_id": ["P1", "P2", "Q9", "Q8"], "arm": list("abab")}), "clients.csv")
    assert "clients.csv: 2 client(s) in rows 4, 5 have no administration in any table" in " ".join(result.notes)
    result = validate_study(frames, config, KEYS, FILES, pd.DataFrame({"client_id": ["P1"], "arm": ["a"]}),
                            "clients.csv")
    assert any("1 client(s) of the tables have no row here" in n for n in result.notes)


def test_client_changing_therapist_is_reported_not_refused():
    frame = forms({("therapist_id", 1): "TH9"})
    result = validate_study({"forms": frame, "coding": coding()}, CONFIG, KEYS, FILES)
    sw = result.therapist_switches
    assert sw["client_id"].unique().tolist() == ["P1"]
    assert sw["therapist_id"].tolist() == ["TH1", "TH9"] and sw["first_session"].tolist() == [1, 2]
    assert any("more than one therapist" in n for n in result.notes)


def test_typed_inputs_from_excel_or_spss_validate_too():
    frame = forms().assign(session=[1.0, 2.0, 1.0, 2.0], wai1=[4.0, 5.0, np.nan, 3.0])
    validate_study({"forms": frame, "coding": coding()}, CONFIG, KEYS, FILES)
    found, _ = problems(frame.assign(session=[1.0, 2.5, 1.0, 2.0]))
    assert [(p.row, p.column, p.value) for p in found] == [(3, "session", 2.5)]


def test_client_table_rules():
    clients = pd.DataFrame({"client_id": ["P1", "P1", None], "arm": ["a", "b", "c"]})
    config = dict(CONFIG, clients={"path": "clients.csv", "client_id": "client_id", "covariates": ["arm", "age"]})
    with pytest.raises(InputError) as err:
        validate_study({"forms": forms(), "coding": coding()}, config, KEYS, FILES, clients, "clients.csv")
    text = str(err.value)
    assert "column 'age'" in text and "one row per client" in text and "row 4" in text


def test_therapist_switches_helper_orders_by_session():
    frame = forms({("therapist_id", 0): "TH0"})
    out = therapist_switches({"forms": frame}, CONFIG["tables"])
    assert out["therapist_id"].tolist() == ["TH0", "TH1"]


def test_client_table_ids_repeat_after_normalisation():
    config = dict(CONFIG, clients={"path": "clients.csv", "client_id": "client_id", "covariates": []})
    frames = {"forms": forms().assign(client_id=["19", "19", "P2", "P2"]), "coding": coding()}
    with pytest.raises(InputError) as err:
        validate_study(frames, config, KEYS, FILES, pd.DataFrame({"client_id": pd.Series(["19", 19.0, "P2"],
                                                                                       dtype=object)}),
                       "clients.csv")
    assert [(p.row, p.column) for p in err.value.problems] == [(2, "client_id"), (3, "client_id")]
    assert all("this id repeats" in p.expected for p in err.value.problems)


def test_an_id_with_a_control_character_is_refused():
    found, text = problems(forms({("client_id", 3): "P\t2"}))
    assert any("invisible characters" in p.expected and "row 5" in p.expected for p in found), text
