"""Block-by-block, dictionary-encoded reading of text tables and chunked validation.

The reference is the whole-file path: pandas' tokeniser on the whole text (what
:func:`alliance.data.io.read_table` did before Arrow read text files) and one pandera check
of the whole frame. Block and chunk sizes are forced small so that a few kilobytes cross many
block boundaries.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from alliance.data import io
from alliance.data.io import read_columns, read_table
from alliance.data.validate import schema_problems, table_schema, validate_study
from alliance.errors import InputError

ODD_CELLS = ["1", " 2", "3 ", "", "x", "4.0", "1e3", "inf", "-1", "nan", "n/a", "NA", "ÄÖ ü", "a,b",
             'say "hi"', "two\nlines", "  ", "0019", "19.0", "ＦＵＬＬ"]


def whole_file(path, header_row=None) -> pd.DataFrame:
    """The reference: pandas on the whole prepared text, every cell a string."""
    text, read_as, sep, header = io._prepared_text(path, io.TEXT_SUFFIXES[path.suffix], header_row)
    frame = io._pandas_text(text, sep, header, path, read_as)
    frame.columns = io._stripped(list(frame.columns))
    return frame


def odd_table(rows: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "client_id": [f"P{i % 97:04d}" for i in range(rows)],
        "session": [str(1 + i // 97) for i in range(rows)],
        "note": rng.choice(ODD_CELLS, size=rows),
        "wai1": rng.choice(ODD_CELLS[:12], size=rows),
    })


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(io, "BLOCK_BYTES", 512)


@pytest.mark.parametrize("encoding,newline", [("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("latin-1", "\r\n"),
                                              ("utf-16", "\n")])
def test_blocks_read_what_the_whole_file_path_reads(tmp_path, small_blocks, encoding, newline):
    table = odd_table(1500)
    if encoding == "latin-1":
        table["note"] = table["note"].str.replace("ＦＵＬＬ", "é", regex=False)
    path = tmp_path / "forms.csv"
    table.to_csv(path, index=False, encoding=encoding, lineterminator=newline)
    expected = whole_file(path)
    got = read_table(path)
    pd.testing.assert_frame_equal(got, expected)
    assert got["note"].isna().sum() == (table["note"] == "").sum() > 0  # empty cells: missing
    assert (got["note"] == "two\nlines").sum() > 0  # a quoted line break crosses no block wrongly


@pytest.mark.parametrize("encoding,newline", [("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-8", "\r\n")])
def test_plain_files_are_read_from_disk_as_the_whole_file_path_reads(tmp_path, small_blocks, encoding, newline):
    table = odd_table(1500)
    table["note"] = table["note"].str.replace(r'["\n,]', "", regex=True)  # nothing to quote
    path = tmp_path / "forms.csv"
    table.to_csv(path, index=False, encoding=encoding, lineterminator=newline)
    assert io._direct_text(path, ",", None) is not None  # Arrow reads the file itself
    pd.testing.assert_frame_equal(read_table(path), whole_file(path))


def test_files_arrow_cannot_take_as_they_are_go_through_the_text(tmp_path):
    path = tmp_path / "forms.csv"
    path.write_bytes(b'a,b\r\n"x\r\ny",2\r\n')  # a quoted line break in a Windows file
    assert io._direct_text(path, ",", None) is None
    assert read_table(path)["a"].tolist() == ["x\ny"]
    path.write_bytes(b"a,b\n1,2\n\xef\xbb\xbf3,4\n")  # two exports joined: a mark inside
    assert io._direct_text(path, ",", None) is None
    assert read_table(path)["a"].tolist() == ["1", "3"]


def test_dictionary_encoded_columns_hold_the_same_values(tmp_path, small_blocks):
    path = tmp_path / "forms.csv"
    odd_table(1200).to_csv(path, index=False)
    got = read_table(path, dictionary=True)
    expected = whole_file(path)
    for column in expected.columns:
        assert isinstance(got[column].dtype, pd.CategoricalDtype)
        pd.testing.assert_series_equal(got[column], expected[column].astype("category"))
    assert got["client_id"].cat.codes.dtype == np.int8  # 97 distinct ids: one byte a cell


def test_projection_reads_the_kept_columns_and_names_all(tmp_path, small_blocks):
    path = tmp_path / "forms.csv"
    odd_table(300).to_csv(path, index=False)
    frame, names = read_columns(path, keep={"session", "wai1"})
    assert names == ["client_id", "session", "note", "wai1"]
    assert list(frame.columns) == ["session", "wai1"]
    pd.testing.assert_frame_equal(frame.astype(object), whole_file(path)[["session", "wai1"]].astype(object))
    none, _ = read_columns(path, keep=set())
    assert none.shape == (300, 0)


@pytest.mark.parametrize("bad_line", ["P1,2,3,4,5", "P1,2", 'P1,"2,3'])
def test_malformed_rows_give_the_whole_file_message(tmp_path, small_blocks, bad_line):
    lines = ["client_id,session,note,wai1"] + [f"P{i},1,x,2" for i in range(400)]
    lines.insert(200, bad_line)
    path = tmp_path / "forms.csv"
    path.write_text("\n".join(lines) + "\n")
    try:
        expected = whole_file(path)
    except InputError as err:
        with pytest.raises(InputError) as got:
            read_table(path)
        assert str(got.value) == str(err)
    else:  # a short row: pandas fills it with missing cells, and so does the reading
        pd.testing.assert_frame_equal(read_table(path), expected)


def test_chunked_checks_find_the_problems_of_one_whole_check(tmp_path, small_blocks):
    path = tmp_path / "forms.csv"
    odd_table(2000).to_csv(path, index=False)
    frame = read_table(path, dictionary=True)
    schema = table_schema("forms", {"respondent": "client"}, {"wai_sr": (["wai1", "wai2"], 1, 5, True)})
    whole = schema_problems(whole_file(path), schema, str(path), chunk_rows=10**9)
    chunked = schema_problems(frame, schema, str(path), chunk_rows=37)
    assert [str(p) for p in chunked] == [str(p) for p in whole]
    assert sum(p.column == "wai2" for p in chunked) == 1  # a missing column is reported once
    assert len({p.row for p in chunked if p.column == "wai1"}) > 200  # bad cells in many chunks


def test_study_validation_reports_the_same_from_dictionary_encoded_frames(tmp_path, small_blocks):
    table = odd_table(1000)
    table["therapist_id"] = "TH1"
    table["wai2"] = "3"
    table.loc[[5, 617, 998], "wai2"] = ["9", "three", ""]
    path = tmp_path / "forms.csv"
    table.to_csv(path, index=False)
    config = {"tables": {"forms": {"path": str(path), "respondent": "client"}},
              "instruments": {"wai_sr": {"key": "wai_sr", "table": "forms", "items": "wai{n}"}}}
    keys = {"wai_sr": SimpleNamespace(n_items=2, response_min=1, response_max=5, integer_responses=True)}
    messages = []
    for frame in (whole_file(path), read_table(path, dictionary=True)):
        with pytest.raises(InputError) as err:
            validate_study({"forms": frame}, config, keys, {"forms": str(path)})
        messages.append([str(p) for p in err.value.problems])
    assert messages[0] == messages[1]
    assert (f"{path}, row 619, column 'wai2': value is a text of 5 characters (letters); expected a whole "
            "number from 1 to 5 (wai_sr) or empty") in messages[1]
