# Inter-rater reliability of observer-rated alliance (ICCs per scale; incomplete coding designs
# by REML variance components). Settings: the interrater: section (config/README.md).
from alliance.interrater_steps import check_interrater_settings

if config["interrater"]["enabled"]:
    check_interrater_settings(config)
    FINAL_OUTPUTS.extend(["results/reliability/interrater_icc.csv"])


rule interrater_icc:
    input:
        administrations="results/interim/administrations.parquet",
        scores="results/scores/scores.parquet",
    output:
        report(
            "results/reliability/interrater_icc.csv",
            caption="../report/interrater_icc.rst",
            category="Reliability",
        ),
    params:
        settings=config["interrater"],
        seed=config["study"]["seed"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/interrater_icc.log",
    script:
        "../scripts/interrater_icc.py"
