# Shared helpers: config validation and input functions (no lambdas in rules).
import hashlib
import json

from snakemake.logging import logger
from alliance.config import validate_config
from alliance.data.io import input_files
from alliance.scoring.instruments import instrument_key_paths

config.update(validate_config(config, source="config"))


def raw_inputs(wildcards=None):
    """Every raw file the config names."""
    return input_files(config)


def key_fingerprint(wildcards=None):
    """The pseudonymisation key's fingerprint (never the key), after the demo-key check.

    A missing or refused key gives "no usable key" here, so that the job graph builds and the
    gate and validation report first; the key_fingerprint step then stops with the reason.
    """
    from alliance.data.keys import study_key_fingerprint

    try:
        return study_key_fingerprint(config)
    except ValueError:
        return "no usable key"


def config_digest(*sections):
    """A digest of config sections, as a rule's ``params:`` entry.

    Snakemake reruns a step whose params changed, so a step's config sections as params make
    an edit rerun exactly the steps it affects. The digest stands in for the sections
    themselves because params are shown in report.html and kept in .snakemake/: a config
    string (a study's name, a model's label) must not reach either unescaped.
    """
    text = json.dumps(sections, sort_keys=True, default=str, ensure_ascii=True)
    return f"sha256:{hashlib.sha256(text.encode('ascii')).hexdigest()[:16]}"


def reading_settings():
    """What decides how the raw files are read: the tables, the client table and deid:."""
    return config_digest(config["tables"], config.get("clients"), config["deid"])


def model_fit_settings(wildcards):
    """The declared model's own entry (and scoring:, which fills its early-alliance default)."""
    return config_digest(config["models"]["fits"][wildcards.model], config["scoring"])


def instrument_key_files(wildcards=None):
    """The instrument key files the configured instruments use (shipped or licence holder's)."""
    return instrument_key_paths(config)


# Memory and time of the heavy steps (issue 18): each claims a straight line in the size of its
# input, fitted to measured runs (alliance.job_resources, README.md "Running on a cluster").
# Snakemake calls these with the job's input, its attempt (1, then 2 on a resubmission) and its
# rule's name; a job whose input does not exist yet is evaluated again just before it starts.
from alliance.job_resources import (
    influence_runtime_minutes,
    input_megabytes,
    step_memory_mb,
    step_runtime_minutes,
)


def input_sized_mem_mb(wildcards, input, attempt, rulename):
    """The job's memory in MB, from its rule's measured line and its input size."""
    return step_memory_mb(rulename, input_megabytes(input), attempt)


def input_sized_runtime(wildcards, input, attempt, rulename):
    """The job's wall-time limit in minutes, from its rule's measured line and its input size."""
    return step_runtime_minutes(rulename, input_megabytes(input), attempt)


def diagnostics_runtime(wildcards, input, attempt):
    """model_diagnostics' time limit: with leave-one-therapist-out influence (models: diagnostics:
    influence:, client-level models by default) one refit per therapist, else a straight line."""
    from alliance.models.steps import diagnostics_influence

    kind = (config["models"]["fits"].get(wildcards.model) or {}).get("kind")
    if diagnostics_influence(config, kind):
        return influence_runtime_minutes(input_megabytes(input), attempt)
    return step_runtime_minutes("model_diagnostics", input_megabytes(input), attempt)


# What `snakemake` builds by default; each rules file adds its own final outputs.
FINAL_OUTPUTS = [
    "results/data/summary.json",
    "results/data/completion.csv",
    "results/figures/missingness.png",
    "results/data/therapist_switches.csv",
    "results/provenance.json",
]


def interrater_inputs():
    """The inter-rater table as a named input of the methods paragraph, when it is computed."""
    if config["interrater"]["enabled"]:
        return {"interrater": "results/reliability/interrater.csv"}
    return {}


def final_outputs():
    """Everything `rule all` asks for."""
    return list(FINAL_OUTPUTS)


def power_plan():
    """The planned batches of the config's power: section (cells x batches)."""
    from alliance.models.power import power_settings

    return power_settings(config["power"], config["study"]["seed"])


def power_batch_files(wildcards=None):
    return [
        f"results/power/batches/{entry['cell_id']}/batch{entry['batch']}.csv"
        for entry in power_plan()["batches"]
    ]


def detection_truth():
    """The simulated study's truth file the rupture detection table is scored against, or None.

    A config copied from the example keeps the example's truth path; a study of one's own has
    no such file (real data have no known ruptures), so the table is left out with a warning
    instead of stopping the run.
    """
    truth = config["ruptures"]["detection"]["truth"]
    if truth and not os.path.exists(truth):
        logger.warning(f"ruptures: detection: truth file {truth} not found; the detection table is not made")
        return None
    return truth


# The report (issue 17): categories in the order of the analysis, every entry labelled with the
# title of its HTML page (alliance.report.pages.PAGES), models named by their config label.
from alliance.report.pages import PAGES


def result_labels(name, download=None):
    """report() labels of result ``name``: its title; ``download`` ("CSV", "JSON") marks the file
    beside the HTML page (an empty download column sorts the page first, and never a toggle)."""
    title = PAGES[name].title if name in PAGES else name
    return {"result": title, "download": download} if download else {"result": title}


def _subcategory_text(text):
    """A config label as a report name: report() applies wildcards to it (braces would be read
    as wildcards) and the report embeds it in a script element (no markup may reach it)."""
    text = str(text).replace("->", "\u2192").replace("{", "(").replace("}", ")")
    return " ".join(text.replace("<", "\u2039").replace(">", "\u203a").split())


def model_subcategory(wildcards):
    """A model's report subcategory: its ``label:`` from the config, not its code name."""
    entry = config["models"]["fits"].get(wildcards.model) or {}
    return _subcategory_text(entry.get("label") or wildcards.model)


def dynamic_subcategory(wildcards):
    """A dynamic model's report subcategory: its ``label:`` from the config."""
    entry = ((config.get("models") or {}).get("dynamic") or {}).get(wildcards.name) or {}
    return _subcategory_text(entry.get("label") or wildcards.name)


def figure_model_labels(figure, title):
    """report() labels of the one-model figure ``figure``: ``title`` and the model's label."""
    name = FIGURE_MODELS[figure]
    entry = (config["models"]["fits"].get(name) or {}) if name else {}
    return {"result": title, "model": _subcategory_text(entry.get("label") or name or "none")}


def report_page_targets(pages, targets):
    """The pages (``pages``: source pattern -> page pattern) of the sources among ``targets``."""
    import re

    found = []
    for source, page in pages.items():
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[A-Za-z][A-Za-z0-9_]*)", re.escape(source))
        for target in targets:
            match = re.fullmatch(pattern, str(target))
            if match:
                found.append(page.format(**match.groupdict()))
    return found

