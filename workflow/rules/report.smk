# Manuscript-ready tables and the generated methods paragraph (issue 7): APA tables of the
# client-level descriptives and correlations, internal consistency and every declared model,
# each as Markdown, LaTeX (booktabs) and HTML, all of them in one Word document, and the methods
# paragraph with the actual N per level, instruments, models and software versions.
# All of it lives in alliance.manuscript.
from alliance.manuscript import manuscript_table_stems
from alliance.models.steps import declared_models, dynamic_benchmark

MANUSCRIPT_MODELS = declared_models(config)
MANUSCRIPT_TABLES = manuscript_table_stems(config)
DYNAMIC_BENCHMARK_INPUT = dynamic_benchmark()  # [] in an installed package (no benchmarks/)

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
            subcategory="APA tables",
            labels={"result": "All manuscript tables"},
        ),
        docx=report(
            "results/tables/tables.docx",
            caption="../report/manuscript_docx.rst",
            category="7 Manuscript tables",
            subcategory="APA tables",
            labels={"result": "All manuscript tables", "download": "Word"},
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
            category="7 Manuscript tables",
            subcategory="Methods",
            labels=result_labels("methods", "Markdown"),
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
            category="8 Provenance",
            labels=result_labels("provenance", "JSON"),
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
        diagnostics=expand("results/models/{model}/diagnostics.json", model=MANUSCRIPT_MODELS),
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


# The report's HTML page of every result table (issue 17): each CSV/JSON/Markdown result is also
# shown as a readable page (alliance.report.pages; numbers rounded for reading, the file beside
# it keeps full precision); large data files (scores, episodes, dyads) only as a page about the
# file. A page is built whenever its source is: REPORT_PAGES maps source -> page.
REPORT_PAGES = {
    "results/data/summary.json": "results/report/tables/data_summary.html",
    "results/data/completion.csv": "results/report/tables/data_completion.html",
    "results/data/therapist_switches.csv": "results/report/tables/data_therapist_switches.html",
    "results/provenance.json": "results/report/tables/provenance.html",
    "results/scores/scores.csv": "results/report/tables/scores_data_file.html",
    "results/change/change.csv": "results/report/tables/change.html",
    "results/change/nhs_talking_therapies.csv": "results/report/tables/change_nhs_talking_therapies.html",
    "results/reliability/internal_consistency.csv": "results/report/tables/reliability_internal_consistency.html",
    "results/reliability/interrater.csv": "results/report/tables/reliability_interrater.html",
    "results/reliability/interrater_agreement.csv": "results/report/tables/reliability_interrater_agreement.html",
    "results/reliability/rater_leniency.csv": "results/report/tables/reliability_rater_leniency.html",
    "results/reliability/rater_pairs.csv": "results/report/tables/reliability_rater_pairs.html",
    "results/models/{model}/fixed_effects.csv": "results/report/tables/model_{model}_fixed_effects.html",
    "results/models/{model}/random_effects.csv": "results/report/tables/model_{model}_random_effects.html",
    "results/models/{model}/fit.json": "results/report/tables/model_{model}_fit.html",
    "results/models/{model}/diagnostics.json": "results/report/tables/model_{model}_diagnostics.html",
    "results/models/{model}/bootstrap.csv": "results/report/tables/model_{model}_bootstrap.html",
    "results/models/dynamic/{name}/estimates.csv": "results/report/tables/model_dynamic_{name}_estimates.html",
    "results/tables/alliance_effects.csv": "results/report/tables/models_alliance_effects.html",
    "results/tables/therapist_icc.csv": "results/report/tables/models_therapist_icc.html",
    "results/sensitivity/specification_curve.csv": "results/report/tables/models_specification_curve.html",
    "results/validation/recovery.csv": "results/report/tables/models_recovery.html",
    "results/validation/recovery.md": "results/report/tables/models_recovery_summary.html",
    "results/validation/dynamic_recovery.md": "results/report/tables/models_dynamic_recovery.html",
    "results/power/power_curve.csv": "results/report/tables/models_power_curve.html",
    "results/ruptures/episodes.csv": "results/report/tables/ruptures_episodes_data_file.html",
    "results/ruptures/summary.csv": "results/report/tables/ruptures_summary.html",
    "results/ruptures/outcome_model.csv": "results/report/tables/ruptures_outcome_model.html",
    "results/ruptures/detection.csv": "results/report/tables/ruptures_detection.html",
    "results/agreement/discrepancy.csv": "results/report/tables/agreement_discrepancy.html",
    "results/agreement/items.csv": "results/report/tables/agreement_items.html",
    "results/agreement/per_dyad.csv": "results/report/tables/agreement_per_dyad_data_file.html",
    "results/agreement/response_surface.csv": "results/report/tables/agreement_response_surface.html",
    "results/tables/methods.md": "results/report/tables/manuscript_methods.html",
}
# The committed dynamic-recovery benchmark (issue 15) in every report: measured once by
# benchmarks/dynamic_recovery.py (600 studies, ~30 min), quoted, not rerun.
FINAL_OUTPUTS.append("results/validation/dynamic_recovery.md")
FINAL_OUTPUTS.extend(report_page_targets(REPORT_PAGES, FINAL_OUTPUTS))


rule report_pages_data:
    input:
        summary="results/data/summary.json",
        completion="results/data/completion.csv",
        switches="results/data/therapist_switches.csv",
        provenance="results/provenance.json",
    output:
        summary=report(
            "results/report/tables/data_summary.html",
            caption="../report/summary.rst",
            category="1 Data",
            labels=result_labels("summary"),
        ),
        completion=report(
            "results/report/tables/data_completion.html",
            caption="../report/completion.rst",
            category="1 Data",
            labels=result_labels("completion"),
        ),
        switches=report(
            "results/report/tables/data_therapist_switches.html",
            caption="../report/therapist_switches.rst",
            category="1 Data",
            labels=result_labels("switches"),
        ),
        provenance=report(
            "results/report/tables/provenance.html",
            caption="../report/provenance.rst",
            category="8 Provenance",
            labels=result_labels("provenance"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_data.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_scoring:
    input:
        scores="results/scores/scores.csv",
        change="results/change/change.csv",
        programme="results/change/nhs_talking_therapies.csv",
        consistency="results/reliability/internal_consistency.csv",
    output:
        scores=report(
            "results/report/tables/scores_data_file.html",
            caption="../report/scores.rst",
            category="2 Scores and change",
            labels=result_labels("scores"),
        ),
        change=report(
            "results/report/tables/change.html",
            caption="../report/change.rst",
            category="2 Scores and change",
            labels=result_labels("change"),
        ),
        programme=report(
            "results/report/tables/change_nhs_talking_therapies.html",
            caption="../report/nhs_talking_therapies.rst",
            category="2 Scores and change",
            labels=result_labels("programme"),
        ),
        consistency=report(
            "results/report/tables/reliability_internal_consistency.html",
            caption="../report/internal_consistency.rst",
            category="3 Reliability",
            subcategory="Internal consistency",
            labels=result_labels("consistency"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_scoring.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_interrater:
    input:
        interrater="results/reliability/interrater.csv",
        interrater_agreement="results/reliability/interrater_agreement.csv",
        leniency="results/reliability/rater_leniency.csv",
        pairs="results/reliability/rater_pairs.csv",
    output:
        interrater=report(
            "results/report/tables/reliability_interrater.html",
            caption="../report/interrater.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("interrater"),
        ),
        interrater_agreement=report(
            "results/report/tables/reliability_interrater_agreement.html",
            caption="../report/interrater_agreement.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("interrater_agreement"),
        ),
        leniency=report(
            "results/report/tables/reliability_rater_leniency.html",
            caption="../report/rater_leniency.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("leniency"),
        ),
        pairs=report(
            "results/report/tables/reliability_rater_pairs.html",
            caption="../report/rater_pairs.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("pairs"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_interrater.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_model:
    input:
        fixed="results/models/{model}/fixed_effects.csv",
        random="results/models/{model}/random_effects.csv",
        fit="results/models/{model}/fit.json",
        diagnostics="results/models/{model}/diagnostics.json",
    output:
        fixed=report(
            "results/report/tables/model_{model}_fixed_effects.html",
            caption="../report/models_fixed_effects.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("fixed"),
        ),
        random=report(
            "results/report/tables/model_{model}_random_effects.html",
            caption="../report/models_random_effects.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("random"),
        ),
        fit=report(
            "results/report/tables/model_{model}_fit.html",
            caption="../report/models_fit.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("fit"),
        ),
        diagnostics=report(
            "results/report/tables/model_{model}_diagnostics.html",
            caption="../report/models_diagnostics.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("diagnostics"),
        ),
    wildcard_constraints:
        model="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_model_{model}.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_bootstrap:
    input:
        bootstrap="results/models/{model}/bootstrap.csv",
    output:
        bootstrap=report(
            "results/report/tables/model_{model}_bootstrap.html",
            caption="../report/models_bootstrap.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("bootstrap"),
        ),
    wildcard_constraints:
        model="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_bootstrap_{model}.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_dynamic:
    input:
        dynamic="results/models/dynamic/{name}/estimates.csv",
    output:
        dynamic=report(
            "results/report/tables/model_dynamic_{name}_estimates.html",
            caption="../report/models_dynamic.rst",
            category="4 Models",
            subcategory=dynamic_subcategory,
            labels=result_labels("dynamic"),
        ),
    wildcard_constraints:
        name="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_dynamic_{name}.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_alliance_effects:
    input:
        alliance_effects="results/tables/alliance_effects.csv",
    output:
        alliance_effects=report(
            "results/report/tables/models_alliance_effects.html",
            caption="../report/models_forest.rst",
            category="4 Models",
            subcategory="All models",
            labels=result_labels("alliance_effects"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_alliance_effects.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_therapist_icc:
    input:
        therapist_icc="results/tables/therapist_icc.csv",
    output:
        therapist_icc=report(
            "results/report/tables/models_therapist_icc.html",
            caption="../report/models_therapist_icc.rst",
            category="4 Models",
            subcategory="All models",
            labels=result_labels("therapist_icc"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_therapist_icc.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_specification_curve:
    input:
        specification_curve="results/sensitivity/specification_curve.csv",
    output:
        specification_curve=report(
            "results/report/tables/models_specification_curve.html",
            caption="../report/models_specification_curve.rst",
            category="4 Models",
            subcategory="Sensitivity: multiverse",
            labels=result_labels("specification_curve"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_specification_curve.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_recovery:
    input:
        recovery="results/validation/recovery.csv",
        recovery_summary="results/validation/recovery.md",
    output:
        recovery=report(
            "results/report/tables/models_recovery.html",
            caption="../report/models_recovery.rst",
            category="4 Models",
            subcategory="Parameter recovery",
            labels=result_labels("recovery"),
        ),
        recovery_summary=report(
            "results/report/tables/models_recovery_summary.html",
            caption="../report/models_recovery.rst",
            category="4 Models",
            subcategory="Parameter recovery",
            labels=result_labels("recovery_summary"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_recovery.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_power:
    input:
        power_curve="results/power/power_curve.csv",
    output:
        power_curve=report(
            "results/report/tables/models_power_curve.html",
            caption="../report/power_curve.rst",
            category="4 Models",
            subcategory="Power",
            labels=result_labels("power_curve"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_power.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_ruptures:
    input:
        episodes="results/ruptures/episodes.csv",
        rupture_summary="results/ruptures/summary.csv",
        rupture_outcome="results/ruptures/outcome_model.csv",
    output:
        episodes=report(
            "results/report/tables/ruptures_episodes_data_file.html",
            caption="../report/ruptures_episodes.rst",
            category="5 Ruptures",
            labels=result_labels("episodes"),
        ),
        rupture_summary=report(
            "results/report/tables/ruptures_summary.html",
            caption="../report/ruptures_summary.rst",
            category="5 Ruptures",
            labels=result_labels("rupture_summary"),
        ),
        rupture_outcome=report(
            "results/report/tables/ruptures_outcome_model.html",
            caption="../report/ruptures_outcome.rst",
            category="5 Ruptures",
            labels=result_labels("rupture_outcome"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_ruptures.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_detection:
    input:
        detection="results/ruptures/detection.csv",
    output:
        detection=report(
            "results/report/tables/ruptures_detection.html",
            caption="../report/ruptures_detection.rst",
            category="5 Ruptures",
            labels=result_labels("detection"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_detection.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_agreement:
    input:
        discrepancy="results/agreement/discrepancy.csv",
        item_table="results/agreement/items.csv",
        per_dyad="results/agreement/per_dyad.csv",
        surface="results/agreement/response_surface.csv",
    output:
        discrepancy=report(
            "results/report/tables/agreement_discrepancy.html",
            caption="../report/agreement_discrepancy.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("discrepancy"),
        ),
        item_table=report(
            "results/report/tables/agreement_items.html",
            caption="../report/agreement_items.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("item_table"),
        ),
        per_dyad=report(
            "results/report/tables/agreement_per_dyad_data_file.html",
            caption="../report/agreement_per_dyad.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("per_dyad"),
        ),
        surface=report(
            "results/report/tables/agreement_response_surface.html",
            caption="../report/agreement_surface.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("surface"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_agreement.log",
    script:
        "../scripts/report_tables.py"


rule report_pages_methods:
    input:
        methods="results/tables/methods.md",
    output:
        methods=report(
            "results/report/tables/manuscript_methods.html",
            caption="../report/manuscript_methods.rst",
            category="7 Manuscript tables",
            subcategory="Methods",
            labels=result_labels("methods"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_methods.log",
    script:
        "../scripts/report_tables.py"


rule dynamic_recovery_benchmark:
    input:
        benchmark=DYNAMIC_BENCHMARK_INPUT,
        # not the study's data, but no result is written for a study that did not pass validation
        validation="results/data/validation_report.json",
    output:
        report(
            "results/validation/dynamic_recovery.md",
            caption="../report/models_dynamic_recovery.rst",
            category="4 Models",
            subcategory="Parameter recovery",
            labels=result_labels("dynamic_recovery", "Markdown"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/validation/dynamic_recovery_benchmark.log",
    script:
        "../scripts/dynamic_recovery_benchmark.py"


rule report_pages_dynamic_recovery:
    input:
        dynamic_recovery="results/validation/dynamic_recovery.md",
    output:
        dynamic_recovery=report(
            "results/report/tables/models_dynamic_recovery.html",
            caption="../report/models_dynamic_recovery.rst",
            category="4 Models",
            subcategory="Parameter recovery",
            labels=result_labels("dynamic_recovery"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/report/report_pages_dynamic_recovery.log",
    script:
        "../scripts/report_tables.py"
