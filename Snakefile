# The alliance-outcome workflow: raw study data -> scores -> models -> report.
# Run with `make run`; the steps are documented in README.md.
import time

from snakemake.utils import min_version

min_version("9.0")


# One study per run: the example's config is read only when no --configfile is given, so a
# study's own config is never merged with the example's tables, clients or demo key.
# A config is data: YTE templating is refused in every config file (plain `snakemake` has
# already evaluated a --configfile's templates by now; `alliance run` checks before it starts).
# The schema and instrument keys come from this workflow's own checkout (or installed copy),
# never from wherever the venv's editable install points: set_root exports the root to this
# process and the jobs' processes, before any module that reads a path is imported.
from alliance.resources import set_root

set_root(workflow.basedir)

from alliance.config import refuse_templating

for given_config in workflow.overwrite_configfiles:
    refuse_templating(given_config)
if not workflow.overwrite_configfiles:
    refuse_templating("config/config.yaml")

    configfile: "config/config.yaml"


# The start page of `snakemake --report`: the run's main results (rule landing_page) once they
# exist, else the workflow's description alone.
LANDING_PAGE = "results/report/landing.rst"


report: os.path.abspath(LANDING_PAGE) if os.path.exists(LANDING_PAGE) else "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/ruptures.smk"
include: "workflow/rules/agreement.smk"
include: "workflow/rules/interrater.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/report.smk"


# One line instead of the full input list (thousands of characters) when the run ends: a
# message replaces the job's input list, and the reason Snakemake prints beside it names only
# the first few files of a long list (alliance.logs.shorten_file_lists). A Snakemake without
# snakemake.jobs.Reason prints its reasons in full.
from alliance.logs import shorten_file_lists

try:
    from snakemake.jobs import Reason
except ImportError:
    Reason = None
if Reason is not None and not hasattr(Reason, "full_str"):
    Reason.full_str = Reason.__str__
    Reason.__str__ = lambda reason: shorten_file_lists(Reason.full_str(reason))


rule all:
    input:
        final_outputs(),
    default_target: True
    message:
        "Every result is up to date under results/; each step's log is under logs/"


# The steps that raised warnings in this run, recapped at its end (each step also printed one
# line when it finished; see alliance.logs).
RUN_STARTED = time.time()


onsuccess:
    from alliance.logs import warning_recap

    recap = warning_recap("logs", since=RUN_STARTED)
    if recap:
        logger.info(recap)
