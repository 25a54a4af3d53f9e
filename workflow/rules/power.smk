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
            category="Power",
        ),
        figure=report(
            "results/figures/power_curve.png",
            caption="../report/power_figure.rst",
            category="Power",
        ),
    params:
        power=config_digest(config.get("power")),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/power/power.log",
    script:
        "../scripts/power_curve.py"
