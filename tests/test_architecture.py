"""The house rules of ``src/alliance`` (docs/architecture.md), checked on the code itself.

* Imports go down the layers only: infrastructure < ``lmm``, ``report`` < ``scoring`` <
  ``data`` < the analysis domains (``models``, ``interrater``, ``ruptures``, ``agreement``) <
  ``manuscript`` < ``cli``, ``wizard``. The analysis domains never import each other; ``lmm``
  imports nothing of the package but itself.
* Inside a domain, statistics never import workflow steps or figures (of any domain).
* Nothing in the package imports Snakemake.
* Every ``workflow/rules/<domain>.smk`` has its ``src/alliance/<domain>/`` and the other way round.

Every import is seen, also those inside functions, so a lazy import cannot hide a wrong edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "alliance"

#: top-level part of a module name -> its layer (lower layers never import higher ones)
LAYERS = {
    "__init__": 0, "errors": 0, "logs": 0, "outputs": 0, "resources": 0, "config": 0, "simulate": 0,
    "job_resources": 0,
    "lmm": 1, "report": 1,
    "scoring": 2,
    "data": 3,
    "models": 4, "interrater": 4, "ruptures": 4, "agreement": 4,
    "manuscript": 5, "landing": 5,
    "cli": 6, "wizard": 6,
}
#: layers whose members are independent of each other
INDEPENDENT = {1, 4}
#: modules that read, compute and write (what the rules' scripts call) or draw
PRESENTATION = {"steps", "figures"}
#: domains whose rules live in workflow/rules/<domain>.smk; report.smk also runs manuscript
DOMAINS = {"data", "scoring", "models", "interrater", "ruptures", "agreement", "report"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the package in ``path``, wherever it stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # "from alliance import models" and "from alliance.models import steps" name modules
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() or \
                        (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").exists():
                    found.append((node.lineno, candidate))
    return found


def edges() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, target in imported_modules(path):
            out.append((str(path.relative_to(ROOT)), line, target))
    return out


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    tops = {top(module_name(p)) for p in PACKAGE.rglob("*.py")} - {"_bundle"}
    assert tops <= LAYERS.keys(), f"modules without a layer in LAYERS: {sorted(tops - LAYERS.keys())}"


def layer_violations(edge_list) -> list[str]:
    wrong = []
    for where, line, target in edge_list:
        if not target.startswith("alliance"):
            continue
        source = top(module_name(ROOT / where))
        dest = top(target)
        if source == dest:
            continue
        if LAYERS[dest] > LAYERS[source]:
            wrong.append(f"{where}:{line} imports {target} (layer {LAYERS[dest]} above {LAYERS[source]})")
        elif LAYERS[dest] == LAYERS[source] and LAYERS[source] in INDEPENDENT:
            wrong.append(f"{where}:{line} imports {target} (sibling domains stay independent)")
    return wrong


def presentation_violations(edge_list) -> list[str]:
    wrong = []
    for where, line, target in edge_list:
        stem = Path(where).stem
        if stem in PRESENTATION or not target.startswith("alliance.") or Path(where).parent == PACKAGE.relative_to(ROOT):
            continue
        if target.rsplit(".", 1)[-1] in PRESENTATION:
            wrong.append(f"{where}:{line} imports {target} (statistics import a step or figure)")
    return wrong


def test_imports_go_down_only():
    assert layer_violations(edges()) == []


def test_the_engine_knows_nothing_of_the_package():
    wrong = [f"{w}:{line} imports {t}" for w, line, t in edges()
             if w.startswith("src/alliance/lmm/") and t.startswith("alliance") and not t.startswith("alliance.lmm")]
    assert wrong == []


def test_statistics_never_import_steps_or_figures():
    assert presentation_violations(edges()) == []


def test_nothing_imports_snakemake():
    wrong = [f"{w}:{line} imports {t}" for w, line, t in edges() if t.split(".")[0] == "snakemake"]
    assert wrong == []


@pytest.mark.parametrize("where,target,rule", [
    ("src/alliance/scoring/scores.py", "alliance.models.steps", layer_violations),      # up a layer
    ("src/alliance/models/data.py", "alliance.interrater.intraclass", layer_violations),  # sibling domain
    ("src/alliance/lmm/fit.py", "alliance.report.tables", layer_violations),             # sibling of lmm
    ("src/alliance/data/validate.py", "alliance.manuscript", layer_violations),
    ("src/alliance/ruptures/episodes.py", "alliance.ruptures.figures", presentation_violations),
    ("src/alliance/models/summaries.py", "alliance.scoring.steps", presentation_violations),
])
def test_the_checks_can_fail(where, target, rule):
    assert len(rule([(where, 1, target)])) == 1


def test_allowed_edges_pass():
    allowed = [("src/alliance/models/steps.py", 1, "alliance.models.figures"),
               ("src/alliance/models/families.py", 1, "alliance.lmm"),
               ("src/alliance/manuscript.py", 1, "alliance.models.steps"),
               ("src/alliance/data/steps.py", 1, "alliance.scoring.instruments")]
    assert layer_violations(allowed) + presentation_violations(allowed) == []


def test_rules_and_domains_correspond():
    rules = {p.stem for p in (ROOT / "workflow" / "rules").glob("*.smk")} - {"common"}
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")} - {"lmm", "_bundle"}
    assert rules == DOMAINS
    assert folders == DOMAINS


def test_provenance_records_the_checkout():
    """provenance.CODE_ROOT is the checkout (it moved with the report domain once and pointed
    at src/, where git saw no change and called every tree clean)."""
    from alliance.report import provenance

    assert (provenance.CODE_ROOT / "Snakefile").is_file()
    assert (provenance.CODE_ROOT / "src" / "alliance").is_dir()
