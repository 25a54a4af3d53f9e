# Alliance-outcome models (issue 5): declared models -> result contract files, tables, forest
# plot with the meta-analytic benchmark, trajectories, scatter, caterpillar; the multiverse
# (one job per specification) and its specification curve; the cluster bootstrap in parallel
# batches; and the parameter-recovery study (`snakemake validate_recovery`, not in `all`).
# All statistics live in alliance.model_workflow / alliance.models.
from alliance.models.steps import (
    bootstrap_batches,
    bootstrap_models,
    declared_models,
    default_targets,
    figure_models,
    recovery_batches,
    specification_ids,
)

# Everything below is computed once from the validated config; input lists are static, so no
# input functions are needed (and `snakemake --lint` wants no functions beside rules).
MODELS = declared_models(config)
SPECIFICATIONS = specification_ids(config)
BOOTSTRAP_MODELS = bootstrap_models(config)
BOOTSTRAP_BATCHES = list(range(len(bootstrap_batches(config)))) if BOOTSTRAP_MODELS else []
RECOVERY_BATCHES = list(range(len(recovery_batches(config))))
FIGURE_MODELS = figure_models(config)

FINAL_OUTPUTS.extend(default_targets(config))


rule model_fit:
    input:
        scores="results/scores/analysis_scores.parquet",
        clients="results/interim/clients.parquet",
    output:
        fixed=report(
            "results/models/{model}/fixed_effects.csv",
            caption="../report/models_fixed_effects.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("fixed", "CSV"),
        ),
        random=report(
            "results/models/{model}/random_effects.csv",
            caption="../report/models_random_effects.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("random", "CSV"),
        ),
        fit=report(
            "results/models/{model}/fit.json",
            caption="../report/models_fit.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("fit", "JSON"),
        ),
        therapists="results/models/{model}/therapist_effects.csv",
        data="results/interim/models/{model}.parquet",
    params:
        fit=model_fit_settings,
        scoring=config_digest(config["scoring"]),
    wildcard_constraints:
        model="[A-Za-z][A-Za-z0-9_]*",
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/{model}.log",
    script:
        "../scripts/model_fit.py"


rule model_tables:
    input:
        fits=expand("results/models/{model}/fit.json", model=MODELS),
        fixed=expand("results/models/{model}/fixed_effects.csv", model=MODELS),
        random=expand("results/models/{model}/random_effects.csv", model=MODELS),
        instrument_keys=instrument_key_files,
    output:
        fixed=report(
            "results/tables/model_fixed_effects.csv",
            caption="../report/models_tables.rst",
            category="4 Models",
            subcategory="All models",
            labels={"result": "Model tables (side by side)", "download": "CSV (fixed effects)"},
        ),
        fit=report(
            "results/tables/model_fit.csv",
            caption="../report/models_fit_table.rst",
            category="4 Models",
            subcategory="All models",
            labels={"result": "Model tables (side by side)", "download": "CSV (fit and warnings)"},
        ),
        markdown=report(
            "results/tables/model_tables.md",
            caption="../report/models_tables.rst",
            category="4 Models",
            subcategory="All models",
            labels={"result": "Model tables (side by side)", "download": "Markdown"},
        ),
        html=report(
            "results/tables/model_tables.html",
            caption="../report/models_tables.rst",
            category="4 Models",
            subcategory="All models",
            labels={"result": "Model tables (side by side)"},
        ),
    params:
        # the table numbers follow the manuscript's (models declared, their kinds and labels)
        models=config_digest((config.get("models") or {}).get("fits")),
        instruments=config_digest(config["instruments"]),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/model_tables.log",
    script:
        "../scripts/model_tables.py"


rule alliance_forest_plot:
    input:
        fits=expand("results/models/{model}/fit.json", model=MODELS),
    output:
        figure=report(
            "results/figures/alliance_forest.png",
            caption="../report/models_forest.rst",
            category="4 Models",
            subcategory="All models",
            labels=result_labels("Forest plot (figure)"),
        ),
        pdf="results/figures/alliance_forest.pdf",
        table=report(
            "results/tables/alliance_effects.csv",
            caption="../report/models_forest.rst",
            category="4 Models",
            subcategory="All models",
            labels=result_labels("alliance_effects", "CSV"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/alliance_forest_plot.log",
    script:
        "../scripts/model_forest.py"


rule therapist_icc:
    input:
        fits=expand("results/models/{model}/fit.json", model=MODELS),
    output:
        table=report(
            "results/tables/therapist_icc.csv",
            caption="../report/models_therapist_icc.rst",
            category="4 Models",
            subcategory="All models",
            labels=result_labels("therapist_icc", "CSV"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/therapist_icc.log",
    script:
        "../scripts/therapist_icc.py"


rule model_trajectories:
    input:
        data=f"results/interim/models/{FIGURE_MODELS['trajectories']}.parquet",
    output:
        report(
            "results/figures/trajectories.png",
            caption="../report/models_trajectories.rst",
            category="4 Models",
            subcategory="Figures",
            labels=figure_model_labels("trajectories", "Trajectories (figure)"),
        ),
        pdf="results/figures/trajectories.pdf",
    params:
        model=FIGURE_MODELS["trajectories"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/model_trajectories.log",
    script:
        "../scripts/model_trajectories.py"


rule early_alliance_scatter:
    input:
        data=f"results/interim/models/{FIGURE_MODELS['scatter']}.parquet",
    output:
        report(
            "results/figures/early_alliance_scatter.png",
            caption="../report/models_scatter.rst",
            category="4 Models",
            subcategory="Figures",
            labels=figure_model_labels("scatter", "Early alliance scatter (figure)"),
        ),
        pdf="results/figures/early_alliance_scatter.pdf",
        # the model-implied line's estimate, p and N, included by models_scatter.rst
        caption="results/figures/early_alliance_scatter_caption.rst",
    params:
        model=FIGURE_MODELS["scatter"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/early_alliance_scatter.log",
    script:
        "../scripts/model_scatter.py"


rule therapist_caterpillar:
    input:
        effects=f"results/models/{FIGURE_MODELS['caterpillar']}/therapist_effects.csv",
    output:
        report(
            "results/figures/therapist_caterpillar.png",
            caption="../report/models_caterpillar.rst",
            category="4 Models",
            subcategory="Figures",
            labels=figure_model_labels("caterpillar", "Therapist caterpillar (figure)"),
        ),
        pdf="results/figures/therapist_caterpillar.pdf",
        # the number of therapists and clients drawn, included by models_caterpillar.rst
        caption="results/figures/therapist_caterpillar_caption.rst",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/therapist_caterpillar.log",
    script:
        "../scripts/model_caterpillar.py"


rule model_specification:
    input:
        scores="results/scores/analysis_scores.parquet",
        clients="results/interim/clients.parquet",
    output:
        "results/sensitivity/specifications/{spec}.json",
    params:
        multiverse=config_digest(config["models"]["multiverse"]),
        scoring=config_digest(config["scoring"]),
    wildcard_constraints:
        spec="[A-Za-z0-9_.-]+",
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    message:
        f"Multiverse: fitting specification {{wildcards.spec}}, one of {len(SPECIFICATIONS)} (log: {{log}})"
    log:
        "logs/sensitivity/{spec}.log",
    script:
        "../scripts/model_specification.py"


rule specification_curve:
    input:
        specifications=expand("results/sensitivity/specifications/{spec}.json", spec=SPECIFICATIONS),
    output:
        table=report(
            "results/sensitivity/specification_curve.csv",
            caption="../report/models_specification_curve.rst",
            category="4 Models",
            subcategory="Sensitivity: multiverse",
            labels=result_labels("specification_curve", "CSV"),
        ),
        figure=report(
            "results/sensitivity/specification_curve.png",
            caption="../report/models_specification_curve.rst",
            category="4 Models",
            subcategory="Sensitivity: multiverse",
            labels=result_labels("Specification curve (figure)"),
        ),
        pdf="results/sensitivity/specification_curve.pdf",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/sensitivity/specification_curve.log",
    script:
        "../scripts/model_specification_curve.py"


rule model_bootstrap_batch:
    input:
        data="results/interim/models/{model}.parquet",
        fit="results/models/{model}/fit.json",
    output:
        "results/interim/bootstrap/{model}/batch_{batch}.csv",
    params:
        bootstrap=config_digest(config["models"]["bootstrap"]),
    wildcard_constraints:
        model="[A-Za-z][A-Za-z0-9_]*",
        batch="[0-9]+",
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    message:
        f"Cluster bootstrap of {{wildcards.model}}, batch {{wildcards.batch}} of batches 0-{len(BOOTSTRAP_BATCHES) - 1}: "
        f"{(config['models'].get('bootstrap') or {}).get('replicates', 0)} resamples in all (log: {{log}})"
    log:
        "logs/bootstrap/{model}_batch_{batch}.log",
    script:
        "../scripts/model_bootstrap_batch.py"


rule model_bootstrap:
    input:
        batches=expand("results/interim/bootstrap/{{model}}/batch_{batch}.csv", batch=BOOTSTRAP_BATCHES),
        fixed="results/models/{model}/fixed_effects.csv",
    output:
        report(
            "results/models/{model}/bootstrap.csv",
            caption="../report/models_bootstrap.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("bootstrap", "CSV"),
        ),
    wildcard_constraints:
        model="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/bootstrap/{model}.log",
    script:
        "../scripts/model_bootstrap.py"


rule recovery_batch:
    output:
        "results/validation/recovery/batch_{batch}.csv",
    params:
        recovery=config_digest(config["models"]["recovery"]),
    wildcard_constraints:
        batch="[0-9]+",
    conda:
        "../envs/alliance.yaml"
    message:
        f"Parameter recovery, batch {{wildcards.batch}} of batches 0-{len(RECOVERY_BATCHES) - 1}: "
        f"{(config['models'].get('recovery') or {}).get('studies', 200)} simulated studies in all, each fitted (log: {{log}})"
    log:
        "logs/validation/recovery_batch_{batch}.log",
    script:
        "../scripts/model_recovery_batch.py"


rule validate_recovery:
    input:
        batches=expand("results/validation/recovery/batch_{batch}.csv", batch=RECOVERY_BATCHES),
    output:
        table=report(
            "results/validation/recovery.csv",
            caption="../report/models_recovery.rst",
            category="4 Models",
            subcategory="Parameter recovery",
            labels=result_labels("recovery", "CSV"),
        ),
        summary=report(
            "results/validation/recovery.md",
            caption="../report/models_recovery.rst",
            category="4 Models",
            subcategory="Parameter recovery",
            labels=result_labels("recovery_summary", "Markdown"),
        ),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/validation/validate_recovery.log",
    script:
        "../scripts/model_recovery.py"


# Power analysis by simulation (not part of `all`): `snakemake power`.
# Each job runs one batch of replications of one grid cell, with its own seed.


rule power_batch:
    output:
        "results/power/batches/{cell}/batch{batch}.csv",
    wildcard_constraints:
        cell=r"[^/]+",
        batch=r"\d+",
    params:
        power=config_digest(config.get("power")),
        seed=config["study"]["seed"],
    resources:
        mem_mb=2000,
    conda:
        "../envs/alliance.yaml"
    message:
        f"Power simulation, cell {{wildcards.cell}} (therapists, clients per therapist, sessions, effect), "
        f"batch {{wildcards.batch}}: {(config.get('power') or {}).get('batch_size', '?')} simulated studies (log: {{log}})"
    log:
        "logs/power/{cell}/batch{batch}.log",
    script:
        "../scripts/power_batch.py"


rule power:
    input:
        power_batch_files,
    output:
        results="results/power/replications.csv",
        curve=report(
            "results/power/power_curve.csv",
            caption="../report/power_curve.rst",
            category="4 Models",
            subcategory="Power",
            labels=result_labels("power_curve", "CSV"),
        ),
        figure=report(
            "results/figures/power_curve.png",
            caption="../report/power_figure.rst",
            category="4 Models",
            subcategory="Power",
            labels=result_labels("Power curve (figure)"),
        ),
        pdf="results/figures/power_curve.pdf",
    params:
        power=config_digest(config.get("power")),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/power/power.log",
    script:
        "../scripts/power_curve.py"


# Dynamic within-person models (RI-CLPM, issue 15): one job per entry under models: dynamic:.
from alliance.models.steps import declared_dynamic_models, dynamic_targets

DYNAMIC_MODELS = declared_dynamic_models(config)
FINAL_OUTPUTS.extend(dynamic_targets(config))


rule model_dynamic:
    input:
        scores="results/scores/analysis_scores.parquet",
    output:
        estimates=report(
            "results/models/dynamic/{name}/estimates.csv",
            caption="../report/models_dynamic.rst",
            category="4 Models",
            subcategory=dynamic_subcategory,
            labels=result_labels("dynamic", "CSV"),
        ),
        fit="results/models/dynamic/{name}/fit.json",
    params:
        dynamic=config_digest((config.get("models") or {}).get("dynamic")),
        scoring=config_digest(config["scoring"]),
    wildcard_constraints:
        name="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/dynamic_{name}.log",
    script:
        "../scripts/model_dynamic.py"


# Model diagnostics (issue 17): residuals, random-effect QQ and leave-one-therapist-out influence
# per declared model (alliance.models.diagnostics; models: diagnostics: in the config).
rule model_diagnostics:
    input:
        data="results/interim/models/{model}.parquet",
        fit="results/models/{model}/fit.json",
    output:
        json=report(
            "results/models/{model}/diagnostics.json",
            caption="../report/models_diagnostics.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("diagnostics", "JSON"),
        ),
        influence="results/models/{model}/influence.csv",
        figure=report(
            "results/figures/diagnostics_{model}.png",
            caption="../report/models_diagnostics.rst",
            category="4 Models",
            subcategory=model_subcategory,
            labels=result_labels("Diagnostics (figure)"),
        ),
        pdf="results/figures/diagnostics_{model}.pdf",
    params:
        diagnostics=config_digest((config.get("models") or {}).get("diagnostics")),
    wildcard_constraints:
        model="[A-Za-z][A-Za-z0-9_]*",
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=diagnostics_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/models/diagnostics_{model}.log",
    script:
        "../scripts/model_diagnostics.py"
