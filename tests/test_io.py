"""Readers: every supported format, encodings, and the errors for unreadable files."""

import datetime

import numpy as np
import pandas as pd
import pytest

from alliance.errors import InputError
from alliance.data.io import read_table

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


# ---------------------------------------------------------------- encodings

WESTERN = "client_id;arm;note\nP01;“CBT” – 5 €;Thérapie\nP02;Ärger;ß\n"


@pytest.mark.parametrize("encoding,named", [
    ("utf-8", None),
    ("utf-8-sig", "utf-8 (BOM)"),
    ("utf-16", "utf-16-le (BOM)"),
    ("utf-16-le", "utf-16-le (no BOM)"),
    ("utf-16-be", "utf-16-be (no BOM)"),
    ("cp1252", "cp1252"),
])
def test_encodings_are_detected_and_logged(tmp_path, caplog, encoding, named):
    path = tmp_path / "t.csv"
    path.write_bytes(WESTERN.encode(encoding))
    with caplog.at_level("INFO", logger="alliance.data.io"):
        got = read_table(path)
    assert list(got.columns) == ["client_id", "arm", "note"]
    assert got["arm"].tolist() == ["“CBT” – 5 €", "Ärger"]
    assert got["note"].tolist() == ["Thérapie", "ß"]
    logged = [r.getMessage() for r in caplog.records if "read as" in r.getMessage()]
    assert logged == ([] if named is None else [f"{path}: read as {named}"])


def test_latin1_without_windows_bytes_stays_latin1(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_bytes("client_id,arm\nP01,Thérapie\nP02,Größe ±\n".encode("latin-1"))
    with caplog.at_level("INFO", logger="alliance.data.io"):
        got = read_table(path)
    assert got["arm"].tolist() == ["Thérapie", "Größe ±"]
    assert f"{path}: read as latin-1" in caplog.text


def test_large_non_western_file_is_detected(tmp_path):
    rows = "".join(f"P{i};Пациент сообщает об улучшении, сессия {i}\n" for i in range(300))
    path = tmp_path / "t.csv"
    path.write_bytes(("client_id;note\n" + rows).encode("cp1251"))
    got = read_table(path)
    assert got["note"].iloc[5] == "Пациент сообщает об улучшении, сессия 5"


def test_encoding_is_named_in_reading_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("client_id;arm\nP01;€;x\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"read as cp1252") as err:
        read_table(path)
    assert "€" not in str(err.value)


def test_detection_reads_a_bounded_sample(tmp_path, monkeypatch):
    import charset_normalizer

    from alliance.data import io

    seen = []
    real = charset_normalizer.from_bytes
    monkeypatch.setattr(charset_normalizer, "from_bytes", lambda b, *a, **k: seen.append(len(b)) or real(b, *a, **k))
    path = tmp_path / "big.csv"
    path.write_bytes(("client_id;arm\n" + "P01;Thérapie – “x”\n" * 20000).encode("cp1252"))
    assert len(read_table(path)) == 20000
    assert seen and max(seen) <= io.SAMPLE_BYTES < path.stat().st_size


# ---------------------------------------------------------------- options and layout

@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".txt", ".parquet", ".sav"])
def test_sheet_for_a_file_without_sheets_is_an_error(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        TABLE.to_parquet(path)
    elif suffix == ".sav":
        pytest.importorskip("pyreadstat").write_sav(TABLE, str(path))
    else:
        TABLE.to_csv(path, sep="\t" if suffix != ".csv" else ",", index=False)
    with pytest.raises(InputError, match=f"no sheet: setting, since a \\{suffix} file has no sheets") as err:
        read_table(path, sheet="Data")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text,header_row", [
    ("Study export 2024\nclient_id,session,wai1\nP01,1,4\nP02,1,5\n", 2),
    ("Study export 2024,,\n,,\nclient_id,session,wai1\nP01,1,4\n", 3),
    ("Export;;\nclient_id;session;wai1\nP01;1;4\n", 2),
    ("GAD-7 export, wave 1\nclient_id,session,wai1\nP01,1,4\n", 2),   # a comma in the title
    ("Export, wave 1\nclient_id;session;wai1\nP01;1;4\n", 2),
])
def test_csv_title_row_is_diagnosed_and_header_row_reads_it(tmp_path, text, header_row):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_table(path)
    assert (f"{path}; expected the header in row 1; row 1 looks like a title; the header appears to be "
            f"row {header_row}: set header_row: {header_row}") in str(err.value)
    got = read_table(path, header_row=header_row)
    assert list(got.columns) == ["client_id", "session", "wai1"]
    assert got["wai1"].iloc[0] == "4"


@pytest.mark.parametrize("text", [
    "client_id\nP01\nP02\n",                                # one column
    "client_id,session,wai1\nP01,1,4,\nP02,1,5,\n",           # stray trailing separators
    "client_id;note\nP01;gut, besser\nP02;schlecht, aber\n",  # commas in a ';' table
])
def test_ordinary_headers_are_not_titles(tmp_path, text):
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert read_table(path)["client_id"].tolist() == ["P01", "P02"]


def _workbook(path, sheets):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)


def test_excel_formulas_without_cached_values_are_refused(tmp_path):
    path = tmp_path / "scripted.xlsx"
    _workbook(path, {"Scores": [["client_id", "session", "wai1", "wai2", "wai_total"],
                                ["P01", 1, 4, 5, "=C2+D2"], ["P02", 1, 3, 3, 6], ["P03", 1, 2, 2, "=C4+D4"]]})
    with pytest.raises(InputError) as err:
        read_table(path)
    message = str(err.value)
    assert str(path) in message and "sheet 'Scores'" in message
    assert "2 formula cell(s) without one (E2, E4) in column(s) E (wai_total), rows 2, 4" in message


def test_excel_formulas_with_cached_values_read(tmp_path):
    path = tmp_path / "saved.xlsx"
    _workbook(path, {"Scores": [["client_id", "wai_total"], ["P01", "=1+1"]]})
    # simulate a workbook saved by Excel: the cached value sits next to the formula
    import zipfile

    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    sheet = next(n for n in parts if n.startswith("xl/worksheets/sheet"))
    assert b"<f>1+1</f><v></v>" in parts[sheet]  # openpyxl writes the formula without a value
    parts[sheet] = parts[sheet].replace(b"<f>1+1</f><v></v>", b"<f>1+1</f><v>2</v>")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    assert read_table(path)["wai_total"].tolist() == [2]


def test_excel_data_on_second_sheet_is_named(tmp_path):
    path = tmp_path / "t.xlsx"
    _workbook(path, {"Notes": [["Exported 2024 from the survey tool"], [], ["see codebook"]],
                     "Data": [["client_id", "session"], ["P01", 1]]})
    with pytest.raises(InputError) as err:
        read_table(path)
    assert ("expected a table on the first sheet 'Notes', which has none; the data look to be on "
            "sheet 'Data': set sheet: Data") in str(err.value)
    assert read_table(path, sheet="Data")["session"].tolist() == [1]


def test_excel_title_row_is_diagnosed(tmp_path):
    path = tmp_path / "t.xlsx"
    _workbook(path, {"Data": [["Alliance study, wave 1"], ["client_id", "session", "wai1"], ["P01", 1, 4]]})
    with pytest.raises(InputError, match="sheet 'Data': row 1 looks like a title; the header appears to be row 2: "
                                         "set header_row: 2"):
        read_table(path)
    got = read_table(path, header_row=2)
    assert list(got.columns) == ["client_id", "session", "wai1"] and got["wai1"].tolist() == [4]


@pytest.mark.parametrize("header_row", [0, -1, 1.5, "2"])
def test_header_row_must_be_a_row_number(tmp_path, header_row):
    path = tmp_path / "t.csv"
    path.write_text("client_id\nP01\n")
    with pytest.raises(InputError, match="header_row: a row number of 1 or more"):
        read_table(path, header_row=header_row)


# ---------------------------------------------------------------- column names

@pytest.mark.parametrize("prefix,note", [
    ("\ufeff", "1 byte-order mark(s) inside the file removed"),  # the leading one is the BOM
    ("\u200b", "byte-order marks or zero-width characters removed from column names"),
    ("\u2060", "byte-order marks or zero-width characters removed from column names"),
])
def test_bom_and_zero_width_characters_leave_column_names(tmp_path, caplog, prefix, note):
    path = tmp_path / "t.csv"
    path.write_bytes(f"{prefix}client_id,ses{prefix}sion\nP01,1\n".encode("utf-8"))
    with caplog.at_level("WARNING", logger="alliance.data.io"):
        got = read_table(path)
    assert list(got.columns) == ["client_id", "session"]
    assert note in caplog.text


def test_bom_in_parquet_column_names_is_removed(tmp_path, caplog):
    path = tmp_path / "t.parquet"
    TABLE.rename(columns={"client_id": "\ufeffclient_id"}).to_parquet(path)
    with caplog.at_level("WARNING", logger="alliance.data.io"):
        got = read_table(path)
    assert list(got.columns) == list(TABLE.columns)
    assert "removed from column names ['client_id']" in caplog.text


# ---------------------------------------------------------------- SPSS

def test_spss_user_missing_labels_and_undeclared_missing_labels(tmp_path, caplog):
    pyreadstat = pytest.importorskip("pyreadstat")
    path = tmp_path / "fragebogen.sav"
    frame = pd.DataFrame({"client_id": ["P01", "P02", "P03", "P04"], "session": [1.0, 1.0, 1.0, 1.0],
                          "phq1": [0.0, 99.0, 3.0, 98.0], "phq2": [1.0, 2.0, 9.0, 99.0]})
    pyreadstat.write_sav(frame, str(path), missing_ranges={"phq1": [99], "phq2": [99]}, variable_value_labels={
        "phq1": {0: "Überhaupt nicht", 3: "Beinahe jeden Tag", 98: "keine Angabe", 99: "nicht beantwortet"},
        "phq2": {1: "An einzelnen Tagen", 9: "weiß nicht", 99: "fehlend"}})
    with caplog.at_level("INFO", logger="alliance.data.io"):
        got = read_table(path)
    assert got["phq1"].iloc[0] == 0 and np.isnan(got["phq1"].iloc[1]) and got["phq1"].iloc[2] == 3
    assert got["phq1"].iloc[3] == 98 and got["phq2"].iloc[2] == 9 and np.isnan(got["phq2"].iloc[3])
    assert "user-missing codes set to missing in ['phq1', 'phq2']" in caplog.text
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2
    assert "column 'phq1': code 98 is labelled as a missing answer but is not declared missing" in warned[0]
    assert "column 'phq2': code 9 is labelled as a missing answer" in warned[1]
    assert not any(label in caplog.text for label in ("keine Angabe", "weiß nicht", "Überhaupt"))


def test_byte_order_marks_inside_the_file_are_removed(tmp_path, caplog):
    path = tmp_path / "joined.csv"
    part = "client_id,session\nP01,1\n".encode("utf-8-sig")
    path.write_bytes(part + part.split(b"\n", 1)[1].replace(b"P01", b"\xef\xbb\xbfP02"))
    with caplog.at_level("WARNING", logger="alliance.data.io"):
        got = read_table(path)
    assert got["client_id"].tolist() == ["P01", "P02"]
    assert f"{path}: 1 byte-order mark(s) inside the file removed" in caplog.text
