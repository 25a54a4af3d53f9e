# Power analysis by simulation (not part of `all`): `snakemake power`.
# Each job runs one batch of replications of one grid cell, with its own seed.


def power_plan():
    """The planned batches of the config's power: section (cells x batches)."""
    from alliance.power import power_settings

    return power_settings(config["power"], config["study"]["seed"])


def power_batch_files(wildcards=None):
    return [
        f"results/power/batches/{entry['cell_id']}/batch{entry['batch']}.csv"
        for entry in power_plan()["batches"]
    ]


rule power_batch:
    output:
        "results/power/batches/{cell}/batch{batch}.csv",
    wildcard_constraints:
        cell=r"[^/]+",
        batch=r"\d+",
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
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/power/power.log",
    script:
        "../scripts/power_curve.py"
