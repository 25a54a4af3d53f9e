"""The Word tables as LibreOffice lays them out (issue 17: words split as "Respon dent", intervals
wrapped as "[.91, .9 / 3]", rows broken across pages).

The workflow's ``results/tables/tables.docx`` (bundled example, the ``example_run`` fixture) is
converted to PDF once per session with LibreOffice (``soffice --headless --convert-to pdf``;
Debian's libreoffice-writer-nogui, which .ci/run installs), beside a copy whose columns are set to
the old fixed 0.75-inch widths. The PDF's text is read by the small reader below (LibreOffice's PDF
is plain: one ``BT ... ET`` text object with an absolute ``Td`` per cell line, simple TrueType
fonts with a ``ToUnicode`` map, Flate-compressed streams; no PDF package is installed, and
``pdftotext`` is not either). The references are the cells python-docx reads from the document:

- every piece of text drawn inside a table's rules is a whole word or number of some cell (a cell
  broken inside a word or an interval leaves a fragment that is no cell's word);
- every number cell (estimates, intervals, p values) is drawn whole, on one line;
- every table starts on its own page with its number, and the tables of several models side by
  side and the reliability table with omega within and between clients (14 columns) are on
  landscape pages (the others portrait); no table runs over to another page;
- the copy with the old fixed widths fails the first check (the check can fail).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from pathlib import Path

import docx
import pytest

W_NS = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
NBSP, NB_HYPHEN = "\u00a0", "\u2011"


# --------------------------------------------------------------------------- a minimal PDF text reader


def _objects(data: bytes) -> dict[int, tuple[bytes, int | None]]:
    """Object number -> (its dictionary, the offset of its stream data or None), found through
    the xref table."""
    start = int(re.search(rb"startxref\s+(\d+)", data[-200:]).group(1))
    header = re.match(rb"xref\s+(\d+)\s+(\d+)\s+", data[start:])
    first, count = int(header.group(1)), int(header.group(2))
    table = data[start + header.end():start + header.end() + 20 * count + 40]
    out = {}
    for i, (offset, kind) in enumerate(re.findall(rb"(\d{10}) \d{5} ([nf])", table)[:count]):
        if kind == b"n":
            at = int(offset)
            end, stream = data.find(b"endobj", at), data.find(b"stream", at)
            if 0 <= stream < end:
                begin = stream + len(b"stream")
                out[first + i] = (data[at:stream], begin + (2 if data[begin:begin + 2] == b"\r\n" else 1))
            else:
                out[first + i] = (data[at:end], None)
    return out


def _stream(data: bytes, objects: dict[int, tuple[bytes, int | None]], number: int) -> bytes:
    head, at = objects[number]
    length = re.search(rb"/Length (\d+)( 0 R)?", head)
    size = int(length.group(1))
    if length.group(2):
        size = int(re.search(rb"obj\s*(\d+)", objects[size][0]).group(1))
    raw = data[at:at + size]
    return zlib.decompress(raw) if b"/FlateDecode" in head else raw


def _to_unicode(cmap: bytes) -> dict[int, str]:
    table = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, text in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            table[int(code, 16)] = bytes.fromhex(text.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for low, high, text in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            base = int(text, 16)
            for k, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                table[code] = chr(base + k)
    return table


def pdf_pages(path: Path) -> list[dict]:
    """Per page: ``size`` (width, height), ``chunks`` [(x, y, text)] of the text as drawn, the
    text objects of one line joined where they touch (LibreOffice draws a no-break space or
    hyphen as a text object of its own) or are a space apart, and ``rules`` [y] of every
    horizontal line drawn."""
    data = path.read_bytes()
    objects = _objects(data)
    fonts = {}
    for number, (head, _) in objects.items():
        if b"/Type/Font" in head and b"/ToUnicode" in head:
            cmap = int(re.search(rb"/ToUnicode (\d+) 0 R", head).group(1))
            first = int(re.search(rb"/FirstChar (\d+)", head).group(1))
            widths = [float(w) for w in re.search(rb"/Widths\s*\[([^\]]*)\]", head).group(1).split()]
            fonts[number] = (_to_unicode(_stream(data, objects, cmap)), first, widths)
    names = {}
    for head, _ in objects.values():
        for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", head):
            if int(number) in fonts:
                names[name.decode()] = fonts[int(number)]
    pages_object = next(head for head, _ in objects.values() if b"/Type/Pages" in head)
    pages = []
    for number in re.findall(rb"(\d+) 0 R", re.search(rb"/Kids\s*\[([^\]]*)\]", pages_object).group(1)):
        page = objects[int(number)][0]
        box = [float(v) for v in re.search(rb"/MediaBox\s*\[([^\]]*)\]", page).group(1).split()]
        content = _stream(data, objects, int(re.search(rb"/Contents (\d+) 0 R", page).group(1))).decode("latin-1")
        drawn = []
        for x, y, font, size, ops in re.findall(r"BT\s+([\d.\-]+) ([\d.\-]+) Td /(F\d+) ([\d.]+) Tf(.*?)ET",
                                                content, re.S):
            unicode, first, widths = names[font]
            hexes = "".join(re.findall(r"<([0-9A-Fa-f]*)>", ops))
            codes = [int(hexes[i:i + 2], 16) for i in range(0, len(hexes), 2)]
            width = sum(widths[c - first] for c in codes if 0 <= c - first < len(widths)) * float(size) / 1000
            drawn.append((float(x), float(y), float(size), width, "".join(unicode.get(c, "?") for c in codes)))
        rules = [float(y1) for _, y1, _, y2 in re.findall(r"([\d.]+) ([\d.]+) m\s+([\d.]+) ([\d.]+) l S", content)
                 if y1 == y2]
        pages.append({"size": (box[2] - box[0], box[3] - box[1]), "chunks": _joined(drawn), "rules": rules})
    return pages


def _joined(drawn: list[tuple[float, float, float, float, str]]) -> list[tuple[float, float, str]]:
    """Text objects on one line (same y) joined when the gap between them is less than a
    third of the font size (touching: no space; about a space wide: one space)."""
    out: list[list] = []
    for x, y, size, width, text in sorted(drawn, key=lambda d: (-d[1], d[0])):
        last = out[-1] if out else None
        if last is not None and abs(last[1] - y) < 0.05 and x - last[3] < size / 3:
            gap = x - last[3]
            last[2] += (" " if gap > size / 10 else "") + text
            last[3] = x + width
        else:
            out.append([x, y, text, x + width])
    return [(x, y, text) for x, y, text, _ in out]


# --------------------------------------------------------------------------- the documents


def _cell_texts(path: Path) -> tuple[set[str], list[str]]:
    """The words of every cell (split at ordinary spaces only: a number cell keeps its no-break
    spaces) and the number cells, as python-docx reads them."""
    words, numbers = set(), []
    for table in docx.Document(str(path)).tables:
        for row in table.rows:
            for cell in row.cells:
                text = cell.text
                words.update(w for w in text.split(" ") if w)
                if text and re.fullmatch(r"[\d\s.,\[\]\u2212<>*\u2014\u00a0\-]+", text) and re.search(r"\d", text):
                    numbers.append(text)
    return words, numbers


def _fixed_width_copy(source: Path, target: Path) -> Path:
    """tables.docx with every column at 0.75 inch and the cells' protections removed (plain
    spaces and hyphens): the layout issue 17 found."""
    document = docx.Document(str(source))
    for table in document.tables:
        table._tbl.tblPr.find("w:tblLayout", W_NS).set(f"{{{W_NS['w']}}}type", "fixed")
        for col in table._tbl.findall("w:tblGrid/w:gridCol", W_NS):
            col.set(f"{{{W_NS['w']}}}w", "1080")
        for width in table._tbl.iter(f"{{{W_NS['w']}}}tcW"):
            span = width.getparent().find("w:gridSpan", W_NS)
            width.set(f"{{{W_NS['w']}}}w", str(1080 * (int(span.get(f"{{{W_NS['w']}}}val")) if span is not None else 1)))
        for t in table._tbl.iter(f"{{{W_NS['w']}}}t"):
            t.text = t.text.replace(NBSP, " ")
        for hyphen in list(table._tbl.iter(f"{{{W_NS['w']}}}noBreakHyphen")):
            t = hyphen.makeelement(f"{{{W_NS['w']}}}t", {})
            t.text = "-"
            hyphen.addprevious(t)
            hyphen.getparent().remove(hyphen)
    document.save(str(target))
    return target


@pytest.fixture(scope="session")
def converted(example_run, tmp_path_factory) -> dict[str, Path]:
    """tables.docx and its fixed-width copy as PDF, by one LibreOffice run."""
    if SOFFICE is None:
        pytest.skip("LibreOffice (soffice) is not installed: apt-get install libreoffice-writer-nogui "
                    "(.ci/run does so) to check the Word tables' layout")
    folder = tmp_path_factory.mktemp("word_layout")
    docx_path = folder / "tables.docx"
    shutil.copyfile(example_run / "results" / "tables" / "tables.docx", docx_path)
    fixed = _fixed_width_copy(docx_path, folder / "fixed_width.docx")
    profile = (folder / "profile").as_uri()  # its own profile: no clash with a running LibreOffice
    proc = subprocess.run([SOFFICE, f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                           "--outdir", str(folder), str(docx_path), str(fixed)],
                          capture_output=True, text=True, timeout=300)
    pdfs = {"docx": docx_path, "pdf": folder / "tables.pdf", "fixed_docx": fixed, "fixed_pdf": folder / "fixed_width.pdf"}
    assert pdfs["pdf"].exists() and pdfs["fixed_pdf"].exists(), f"soffice failed:\n{proc.stdout}\n{proc.stderr}"
    return pdfs


def _table_chunks(pages: list[dict]) -> list[tuple[int, float, str]]:
    """(page, y, text) of the text drawn between a page's first and last horizontal rule."""
    out = []
    for number, page in enumerate(pages, start=1):
        if len(page["rules"]) < 2:
            continue
        top, bottom = max(page["rules"]), min(page["rules"])
        out += [(number, y, text) for _, y, text in page["chunks"] if bottom < y < top]
    return out


def _fragments(pdf: Path, docx_path: Path) -> list[str]:
    """Pieces drawn in the tables that are no cell's word: words or numbers broken in two."""
    words, _ = _cell_texts(docx_path)
    drawn = [piece.replace(NB_HYPHEN, "-") for _, _, text in _table_chunks(pdf_pages(pdf))
             for piece in text.split(" ") if piece]
    return sorted({piece for piece in drawn if piece not in words})


# --------------------------------------------------------------------------- the checks


def test_no_word_or_number_is_split_in_the_word_tables(converted):
    fragments = _fragments(converted["pdf"], converted["docx"])
    assert fragments == [], f"table text broken across lines in LibreOffice: {fragments[:20]}"
    _, numbers = _cell_texts(converted["docx"])
    drawn = {text.replace(NB_HYPHEN, "-") for _, _, text in _table_chunks(pdf_pages(converted["pdf"]))}
    whole = [n for n in numbers if n in drawn]
    assert len(numbers) > 100 and whole == numbers, sorted(set(numbers) - drawn)[:20]


def test_the_old_fixed_widths_would_fail_the_check(converted):
    """The reader and the check see the breaks the fixed 0.75-inch columns made."""
    fragments = _fragments(converted["fixed_pdf"], converted["fixed_docx"])
    assert len(fragments) >= 5, fragments


def test_each_table_on_its_page_wide_tables_landscape_rows_not_split(converted):
    pages = pdf_pages(converted["pdf"])
    document = docx.Document(str(converted["docx"]))
    numbers = [p.text for p in document.paragraphs if re.fullmatch(r"Table \d+", p.text)]
    starts = {}
    for i, page in enumerate(pages):
        for _, _, text in page["chunks"]:
            if re.fullmatch(r"Table \d+", text.replace(NBSP, " ")):
                starts[text.replace(NBSP, " ")] = i
    assert list(starts) == numbers and len(set(starts.values())) == len(numbers), starts
    for number, grid in zip(numbers, document.tables):
        page = pages[starts[number]]
        first_row = ["".join(t.text for t in tc.iter(f"{{{W_NS['w']}}}t")) for tc in grid._tbl.tr_lst[0].tc_lst]
        side_by_side = sum(text.startswith("Model ") for text in first_row) >= 2
        multilevel = "Within clients" in first_row  # reliability with omega within and between: 14 columns
        assert (page["size"][0] > page["size"][1]) == (side_by_side or multilevel), \
            f"{number}: landscape only for models side by side and the multilevel reliability table"
        # every row's first cell text is on the page of the number (no table runs over)
        first_cells = [row.cells[0].text for row in grid.rows if row.cells[0].text]
        drawn = " ".join(text for _, _, text in page["chunks"]).replace(NB_HYPHEN, "-")
        assert all(word in drawn for cell in first_cells for word in cell.split(" ")), number
