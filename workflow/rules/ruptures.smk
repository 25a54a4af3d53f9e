# Rupture-repair episodes (issues 6, 16): session-by-session alliance -> episodes at each threshold
# (the client's own SD), per-client counts, example trajectories, the link to outcome in a
# multilevel model and, for a simulated study with known episodes, a detection table.
# Settings: the ruptures: section of the config (config/README.md).
from alliance.ruptures.steps import check_rupture_settings, trajectory_figure_paths

if config["ruptures"]["enabled"]:
    check_rupture_settings(config)
    FINAL_OUTPUTS.extend(
        [
            "results/ruptures/episodes.csv",
            "results/ruptures/counts.csv",
            "results/ruptures/summary.csv",
            "results/ruptures/outcome_model.csv",
            "results/ruptures/outcome_model.json",
        ]
        + [path for path, label in trajectory_figure_paths(config["ruptures"])]
    )
    if detection_truth():
        FINAL_OUTPUTS.append("results/ruptures/detection.csv")


rule ruptures:
    input:
        scores="results/scores/analysis_scores.parquet",
    output:
        # a large data file: not embedded in the report; its page there says what it holds
        episodes="results/ruptures/episodes.csv",
        counts="results/ruptures/counts.csv",
        summary=report(
            "results/ruptures/summary.csv",
            caption="../report/ruptures_summary.rst",
            category="5 Ruptures",
            labels=result_labels("rupture_summary", "CSV"),
        ),
        figures=[
            report(
                path,
                caption="../report/ruptures_trajectories.rst",
                category="5 Ruptures",
                subcategory="Example trajectories",
                labels={"result": "Example trajectories (figure)", "threshold": label},
            )
            for path, label in trajectory_figure_paths(config["ruptures"])
        ],
        pdf=[path.removesuffix(".png") + ".pdf" for path, label in trajectory_figure_paths(config["ruptures"])],
    params:
        settings=config["ruptures"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/ruptures.log",
    script:
        "../scripts/ruptures.py"


rule ruptures_outcome:
    input:
        counts="results/ruptures/counts.csv",
        change="results/change/change.csv",
        clients="results/interim/clients.parquet",
    output:
        table=report(
            "results/ruptures/outcome_model.csv",
            caption="../report/ruptures_outcome.rst",
            category="5 Ruptures",
            labels=result_labels("rupture_outcome", "CSV"),
        ),
        fit="results/ruptures/outcome_model.json",
    params:
        settings=config["ruptures"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/ruptures_outcome.log",
    script:
        "../scripts/ruptures_outcome.py"


rule ruptures_detection:
    input:
        scores="results/scores/analysis_scores.parquet",
        truth=config["ruptures"]["detection"]["truth"] or [],
        # a new key changes the pseudonyms the injected episodes are mapped to
        fingerprint="results/data/key_fingerprint.txt",
    output:
        table=report(
            "results/ruptures/detection.csv",
            caption="../report/ruptures_detection.rst",
            category="5 Ruptures",
            labels=result_labels("detection", "CSV"),
        ),
    params:
        settings=config["ruptures"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/ruptures_detection.log",
    script:
        "../scripts/ruptures_detection.py"
