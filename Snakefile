# The alliance-outcome workflow: raw study data -> scores -> models -> report.
# Run with `make run`; the steps are documented in README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/power.smk"
include: "workflow/rules/ruptures.smk"
include: "workflow/rules/agreement.smk"
include: "workflow/rules/interrater.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/manuscript.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
