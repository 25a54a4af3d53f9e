# Scores, internal consistency and change (issue 3): administrations -> scores -> reliability,
# reliable and clinically significant change, Jacobson plot. Instrument keys: config/instruments/.

FINAL_OUTPUTS.extend(
    [
        "results/scores/scores.parquet",
        "results/scores/scores.csv",
        "results/reliability/internal_consistency.csv",
        "results/change/change.csv",
        "results/change/nhs_talking_therapies.csv",
        "results/figures/jacobson.png",
    ]
)


rule score:
    input:
        administrations="results/interim/administrations.parquet",
        instrument_keys=instrument_key_files,
    output:
        parquet="results/scores/scores.parquet",
        analysis="results/scores/analysis_scores.parquet",
        # a large data file: not embedded in the report; its page there says what it holds
        csv="results/scores/scores.csv",
    params:
        instruments=config_digest(config["instruments"]),
        # how the coders' ratings enter results/scores/analysis_scores.parquet
        combine=config["interrater"]["combine"],
        designated_rater=config["interrater"]["designated_rater"],
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/score.log",
    script:
        "../scripts/score.py"


rule internal_consistency:
    input:
        administrations="results/interim/administrations.parquet",
        scores="results/scores/scores.parquet",
        instrument_keys=instrument_key_files,
    output:
        report(
            "results/reliability/internal_consistency.csv",
            caption="../report/internal_consistency.rst",
            category="3 Reliability",
            subcategory="Internal consistency",
            labels=result_labels("consistency", "CSV"),
        ),
    params:
        instruments=config_digest(config["instruments"]),
        sessions=config["scoring"]["reliability_sessions"],
        n_boot=config["scoring"]["reliability_bootstrap"],
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/internal_consistency.log",
    script:
        "../scripts/internal_consistency.py"


rule change:
    input:
        scores="results/scores/scores.parquet",
        instrument_keys=instrument_key_files,
    output:
        table=report(
            "results/change/change.csv",
            caption="../report/change.rst",
            category="2 Scores and change",
            labels=result_labels("change", "CSV"),
        ),
        parameters="results/change/change_parameters.json",
        programme=report(
            "results/change/nhs_talking_therapies.csv",
            caption="../report/nhs_talking_therapies.rst",
            category="2 Scores and change",
            labels=result_labels("programme", "CSV"),
        ),
    params:
        instruments=config_digest(config["instruments"]),
        scoring=config_digest(config["scoring"]),
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/change.log",
    script:
        "../scripts/change.py"


rule jacobson_plot:
    input:
        table="results/change/change.csv",
        parameters="results/change/change_parameters.json",
    output:
        report(
            "results/figures/jacobson.png",
            caption="../report/jacobson.rst",
            category="2 Scores and change",
            labels=result_labels("Jacobson plot (figure)"),
        ),
        pdf="results/figures/jacobson.pdf",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/jacobson_plot.log",
    script:
        "../scripts/jacobson_plot.py"
