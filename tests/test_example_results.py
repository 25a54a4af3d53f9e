"""The bundled example's results, byte for byte, as recorded in tests/data/example_results.sha256.

The list was recorded when the library moved into one folder per domain (issue 20) and proves
that code moves leave every result file unchanged. A change that alters results on purpose
re-records it (`make run && make example-hashes`) and says so in its commit message; an
unintended change fails here with the files that differ. Exempt: report.html (Snakemake stamps
its own wrapper and embeds the code), provenance.json (records the commit) and its page
provenance.html.

It is also the test that two runs give identical bytes: the record comes from one run (in the
checkout), this test's run is another (in a fresh folder, on another day or machine).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

RECORDED = Path(__file__).parent / "data" / "example_results.sha256"
EXEMPT = {"report.html", "provenance.json", "provenance.html"}


def recorded() -> dict[str, str]:
    out = {}
    for line in RECORDED.read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.removeprefix("./")] = digest
    return out


@pytest.mark.slow
def test_example_results_are_byte_identical_to_the_record(example_run):
    results = example_run / "results"
    got = {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(results.rglob("*")) if p.is_file() and p.name not in EXEMPT}
    want = recorded()
    assert len(want) > 50
    assert sorted(set(want) - set(got)) == [], "recorded result files missing from the run"
    assert sorted(set(got) - set(want)) == [], "result files not in the record (make example-hashes)"
    assert sorted(name for name in want if got[name] != want[name]) == []
