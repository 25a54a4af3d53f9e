# Manuscript-ready tables and the generated methods paragraph (issue 7): APA tables of the
# client-level descriptives and correlations, internal consistency and every declared model,
# each as Markdown, LaTeX (booktabs) and HTML, all of them in one Word document, and the methods
# paragraph with the actual N per level, instruments, models and software versions.
# All of it lives in alliance.manuscript.
from alliance.manuscript import manuscript_table_stems
from alliance.models.steps import declared_models

MANUSCRIPT_MODELS = declared_models(config)
MANUSCRIPT_TABLES = manuscript_table_stems(config)

FINAL_OUTPUTS.extend(
    expand("results/tables/{table}.{ext}", table=MANUSCRIPT_TABLES, ext=["md", "tex"])
    + ["results/tables/manuscript_tables.html", "results/tables/tables.docx", "results/tables/methods.md"]
)


rule manuscript_tables:
    input:
        scores="results/scores/analysis_scores.parquet",
        clients="results/interim/clients.parquet",
        consistency="results/reliability/internal_consistency.csv",
        instrument_keys=instrument_key_files,
        fits=expand("results/models/{model}/fit.json", model=MANUSCRIPT_MODELS),
        fixed=expand("results/models/{model}/fixed_effects.csv", model=MANUSCRIPT_MODELS),
        random=expand("results/models/{model}/random_effects.csv", model=MANUSCRIPT_MODELS),
    output:
        markdown=expand("results/tables/{table}.md", table=MANUSCRIPT_TABLES),
        latex=expand("results/tables/{table}.tex", table=MANUSCRIPT_TABLES),
        html=report(
            "results/tables/manuscript_tables.html",
            caption="../report/manuscript_tables.rst",
            category="7 Manuscript tables",
            labels={"table": "all manuscript tables", "format": "HTML"},
        ),
        docx=report(
            "results/tables/tables.docx",
            caption="../report/manuscript_docx.rst",
            category="7 Manuscript tables",
            labels={"table": "all manuscript tables", "format": "Word"},
        ),
    params:
        study=config_digest(config["study"]),
        instruments=config_digest(config["instruments"]),
        models=config_digest((config.get("models") or {}).get("fits")),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/manuscript/manuscript_tables.log",
    script:
        "../scripts/manuscript_tables.py"


rule methods_paragraph:
    input:
        summary="results/data/summary.json",
        provenance="results/provenance.json",
        instrument_keys=instrument_key_files,
        fits=expand("results/models/{model}/fit.json", model=MANUSCRIPT_MODELS),
        **interrater_inputs(),
    output:
        report(
            "results/tables/methods.md",
            caption="../report/manuscript_methods.rst",
            category="Tables",
            subcategory="Methods",
        ),
    params:
        study=config_digest(config["study"]),
        instruments=config_digest(config["instruments"]),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/manuscript/methods_paragraph.log",
    script:
        "../scripts/manuscript_methods.py"


# Provenance: input hashes, the resolved config, package versions, the commit and seeds.


rule provenance:
    input:
        raw=raw_inputs,
        instrument_keys=instrument_key_files,
        validation="results/data/validation_report.json",
    output:
        report(
            "results/provenance.json",
            caption="../report/provenance.rst",
            category="Data",
        ),
    params:
        # provenance.json records the resolved config
        config=config_digest(config),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/provenance.log",
    script:
        "../scripts/provenance.py"


# The report's start page: the study's main results first (the Snakefile's `report:` takes it
# when it exists, so `snakemake --report` after a run opens on the numbers).
FINAL_OUTPUTS.append(LANDING_PAGE)


rule landing_page:
    input:
        summary="results/data/summary.json",
        fits=expand("results/models/{model}/fit.json", model=MANUSCRIPT_MODELS),
        fixed=expand("results/models/{model}/fixed_effects.csv", model=MANUSCRIPT_MODELS),
        description=os.path.join(workflow.basedir, "workflow", "report", "workflow.rst"),
        **interrater_inputs(),
    output:
        LANDING_PAGE,
    params:
        study=config_digest(config["study"]),
        models=config_digest(config.get("models")),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/landing_page.log",
    script:
        "../scripts/landing_page.py"
