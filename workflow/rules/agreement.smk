# Client-therapist agreement on the alliance (issue 6): discrepancy per scale, item and dyad with
# Bland-Altman limits and plots, and response surface analysis of client and therapist alliance
# predicting the post-treatment outcome (baseline as covariate). Settings: the agreement: section
# of the config (config/README.md).
from alliance.agreement.steps import bland_altman_figure_paths, check_agreement_settings

if config["agreement"]["enabled"]:
    check_agreement_settings(config)
    FINAL_OUTPUTS.extend(
        [
            "results/agreement/discrepancy.csv",
            "results/agreement/items.csv",
            "results/agreement/per_dyad.csv",
            "results/agreement/response_surface.csv",
            "results/agreement/response_surface.json",
            "results/agreement/response_surface.png",
            "results/agreement/response_surface_caption.rst",
        ]
        + [path for path, scale in bland_altman_figure_paths(config["agreement"])]
    )


rule agreement:
    input:
        scores="results/scores/analysis_scores.parquet",
        administrations="results/interim/administrations.parquet",
        instrument_keys=instrument_key_files,
    output:
        discrepancy=report(
            "results/agreement/discrepancy.csv",
            caption="../report/agreement_discrepancy.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("discrepancy", "CSV"),
        ),
        item_table=report(
            "results/agreement/items.csv",
            caption="../report/agreement_items.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("item_table", "CSV"),
        ),
        # a large data file: not embedded in the report; its page there says what it holds
        per_dyad="results/agreement/per_dyad.csv",
        figures=[
            report(
                path,
                caption="../report/agreement_bland_altman.rst",
                category="6 Client–therapist agreement",
                subcategory="Bland-Altman plots",
                labels={"result": "Bland-Altman plot (figure)", "scale": scale},
            )
            for path, scale in bland_altman_figure_paths(config["agreement"])
        ],
        pdf=[path.removesuffix(".png") + ".pdf" for path, scale in bland_altman_figure_paths(config["agreement"])],
    params:
        settings=config["agreement"],
        instruments=config["instruments"],
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/agreement.log",
    script:
        "../scripts/agreement.py"


rule agreement_surface:
    input:
        scores="results/scores/analysis_scores.parquet",
        change="results/change/change.csv",
        clients="results/interim/clients.parquet",
        instrument_keys=instrument_key_files,
    output:
        table=report(
            "results/agreement/response_surface.csv",
            caption="../report/agreement_surface.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("surface", "CSV"),
        ),
        fit="results/agreement/response_surface.json",
        figure=report(
            "results/agreement/response_surface.png",
            caption="../report/agreement_surface_figure.rst",
            category="6 Client–therapist agreement",
            labels=result_labels("Response surface (figure)"),
        ),
        pdf="results/agreement/response_surface.pdf",
        # the figure's caption with the a1-a5 tests, included by agreement_surface_figure.rst
        caption="results/agreement/response_surface_caption.rst",
    params:
        settings=config["agreement"],
        instruments=config["instruments"],
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/agreement_surface.log",
    script:
        "../scripts/agreement_surface.py"
