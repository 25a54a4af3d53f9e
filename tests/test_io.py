"""Readers: every supported format, encodings, and the errors for unreadable files."""

import datetime

import numpy as np
import pandas as pd
import pytest

from alliance.errors import InputError
from alliance.io import read_table

TABLE = pd.DataFrame({
    "client_id": ["P01", "P01", "P02"],
    "therapist_id": ["TH1", "TH1", "TH2"],
    "session": [1, 2, 1],
    "wai1": [4.0, 5.0, np.nan],
})


def as_text(frame):
    return frame.astype(object).where(frame.notna(), None).map(lambda v: None if v is None else str(v))


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t"), (".txt", "\t")])
def test_text_formats_read_as_strings(tmp_path, suffix, sep):
    path = tmp_path / f"t{suffix}"
    TABLE.to_csv(path, sep=sep, index=False)
    got = read_table(path)
    assert list(got.columns) == list(TABLE.columns)
    assert got["session"].tolist() == ["1", "2", "1"]
    assert got["wai1"].tolist()[:2] == ["4.0", "5.0"] and pd.isna(got["wai1"].iloc[2])


def test_utf8_bom_and_latin1(tmp_path):
    text = "client_id,therapist_id,session,note_code\nP01,Thérèse,1,é\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.encode("latin-1"))
    for path in (bom, latin):
        got = read_table(path)
        assert got.columns[0] == "client_id"  # no BOM glued to the first name
        assert got["therapist_id"].iloc[0] == "Thérèse"


def test_excel_keeps_date_cells(tmp_path):
    path = tmp_path / "t.xlsx"
    frame = TABLE.assign(visit=pd.to_datetime(["2024-01-02", "2024-01-09", "2024-02-01"]))
    frame.to_excel(path, index=False)
    got = read_table(path)
    assert got["session"].tolist() == [1, 2, 1]
    assert isinstance(got["visit"].iloc[0], datetime.datetime)


def test_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    TABLE.to_parquet(path)
    pd.testing.assert_frame_equal(read_table(path), TABLE)


def test_spss_user_missing_codes_become_missing(tmp_path):
    pyreadstat = pytest.importorskip("pyreadstat")
    path = tmp_path / "t.sav"
    frame = pd.DataFrame({"client_id": ["P01", "P02", "P03"], "session": [1.0, 1.0, 1.0],
                          "wai1": [4.0, 99.0, 3.0]})
    pyreadstat.write_sav(frame, str(path), missing_ranges={"wai1": [99]},
                         variable_value_labels={"wai1": {99: "refused", 4: "often"}})
    got = read_table(path)
    assert got["wai1"].iloc[0] == 4.0 and np.isnan(got["wai1"].iloc[1]) and got["wai1"].iloc[2] == 3.0


def test_column_names_are_stripped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("client_id ,  session\nP01,1\n")
    assert list(read_table(path).columns) == ["client_id", "session"]


@pytest.mark.parametrize("content,expected", [
    ("", "empty"),
    ("client_id,session\n", "found none"),
    ("a,a\n1,2\n", "unique column names"),
])
def test_unreadable_files_name_the_problem(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=expected) as err:
        read_table(path)
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="an existing file"):
        read_table(tmp_path / "nope.csv")
    odd = tmp_path / "t.json"
    odd.write_text("{}")
    with pytest.raises(InputError, match="one of the formats"):
        read_table(odd)
