# Inter-rater reliability of observer ratings (issue 9): per observer instrument, ICCs at scale
# and item level, Krippendorff's alpha and weighted kappas of the items, coder leniency and
# coder-pair agreement with their figures. Settings: the interrater: section (config/README.md).
from alliance.interrater.steps import check_interrater_settings, interrater_instruments

INTERRATER_INSTRUMENTS = []
if config["interrater"]["enabled"]:
    check_interrater_settings(config)
    INTERRATER_INSTRUMENTS = interrater_instruments(config)
    FINAL_OUTPUTS.extend(
        [
            "results/reliability/interrater.csv",
            "results/reliability/interrater_agreement.csv",
            "results/reliability/rater_leniency.csv",
            "results/reliability/rater_pairs.csv",
        ]
        + expand("results/figures/interrater/{instrument}_leniency.png", instrument=INTERRATER_INSTRUMENTS)
        + expand("results/figures/interrater/{instrument}_pairs.png", instrument=INTERRATER_INSTRUMENTS)
    )


rule interrater:
    input:
        administrations="results/interim/administrations.parquet",
        scores="results/scores/scores.parquet",
        instrument_keys=instrument_key_files,
    output:
        icc=report(
            "results/reliability/interrater.csv",
            caption="../report/interrater.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("interrater", "CSV"),
        ),
        agreement=report(
            "results/reliability/interrater_agreement.csv",
            caption="../report/interrater_agreement.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("interrater_agreement", "CSV"),
        ),
        leniency=report(
            "results/reliability/rater_leniency.csv",
            caption="../report/rater_leniency.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("leniency", "CSV"),
        ),
        pairs=report(
            "results/reliability/rater_pairs.csv",
            caption="../report/rater_pairs.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels=result_labels("pairs", "CSV"),
        ),
    params:
        settings=config["interrater"],
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/interrater.log",
    script:
        "../scripts/interrater.py"


rule interrater_figures:
    input:
        administrations="results/interim/administrations.parquet",
        scores="results/scores/scores.parquet",
    output:
        leniency=report(
            "results/figures/interrater/{instrument}_leniency.png",
            caption="../report/rater_leniency_figure.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels={"result": "Coder leniency (figure): {instrument}"},
        ),
        pairs=report(
            "results/figures/interrater/{instrument}_pairs.png",
            caption="../report/rater_pairs_figure.rst",
            category="3 Reliability",
            subcategory="Inter-rater",
            labels={"result": "Coder pairs (figure): {instrument}"},
        ),
        leniency_pdf="results/figures/interrater/{instrument}_leniency.pdf",
        pairs_pdf="results/figures/interrater/{instrument}_pairs.pdf",
    params:
        settings=config["interrater"],
    wildcard_constraints:
        instrument="|".join(INTERRATER_INSTRUMENTS) or "no-instrument",
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/interrater_figures_{instrument}.log",
    script:
        "../scripts/interrater_figures.py"
