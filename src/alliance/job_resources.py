"""Memory and run time a workflow step claims, computed from the size of its input (issue 18).

Snakemake asks every job for its ``resources``; a cluster executor (``profiles/slurm``) turns
``mem_mb`` and ``runtime`` into the job's memory and time limit, and a local run with a memory
budget (``profiles/local``) starts a job only when its ``mem_mb`` fits. The heavy steps' memory
and time grow with their input files, so each such rule's claim is a straight line in the size
of its input::

    mem_mb  = ceil(MEMORY_HEADROOM * (base_mb + mb_per_input_mb * input_mb)) * attempt
    runtime = ceil(TIME_HEADROOM * (base_minutes + minutes_per_input_mb * input_mb ** time_exponent)) * attempt

``input_mb`` is the job's input in Parquet megabytes (:func:`input_megabytes`): text tables
count at 1/TEXT_PER_PARQUET of their size, because the same table is that much larger as CSV.
A job that Snakemake resubmits (``retries:``) claims twice as much on its second attempt.
Time is a straight line too (``time_exponent`` 1) except for the leave-one-therapist-out
influence of the model diagnostics (:data:`INFLUENCE_MODEL`): one refit per therapist, each
from the therapists' precomputed cross-products (:mod:`alliance.lmm.reweight`), so the number
of refits and the cost of each both grow with the input; measured nearly linear up to 5,000
therapists, bounded by the power 1.5.

The lines (:data:`STEP_MODELS`) were fitted to the step logs' peak memory and wall time
(``alliance.logs``) of ``benchmarks/rom_scale.py`` at 5,000 and 10,000 clients on the 2-core
development machine and to the 100,000-client runs of issue 18; the figures and the fit are in
README.md ("Running on a cluster"). They describe the code as it was measured: a step made
leaner later claims more than it needs until the lines are refitted (tests/test_job_resources.py
holds the data steps' claims to between their measured peaks and 1.6 times them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepModel:
    """A step's peak memory (MB) and wall time (minutes) in its input size (Parquet MB)."""

    base_mb: float
    mb_per_input_mb: float
    base_minutes: float
    minutes_per_input_mb: float
    time_exponent: float = 1.0


#: the measured lines, per rule: (base_mb, mb_per_input_mb, base_minutes, minutes_per_input_mb).
#: Time: 5 minutes to start a step plus the measured wall time per input MB. Where no newer
#: measurement is commented, the line is the first one: memory the least squares through the
#: step logs' peaks (MiB x 1.048576) of benchmarks/rom_scale.py at 5,000 and 10,000 clients and
#: the first 100,000-client run of issue 18 (input sizes there: 20 x those at 5,000 clients),
#: time that run's wall time per input MB.
STEP_MODELS: dict[str, StepModel] = {
    # refitted to issue 18's 1x/2x/4x runs (benchmarks/rom_scaling.py: 100,000-400,000 clients,
    # one job at a time): memory the least-squares line through the three peaks, time the 4x
    # run's wall time per input MB
    "deid_gate": StepModel(286, 36, 5, 0.0075),
    "validate_data": StepModel(384, 34, 5, 0.0064),
    "ingest": StepModel(419, 110, 5, 0.018),
    "data_summary": StepModel(342, 120, 5, 0.015),
    "score": StepModel(371, 159, 5, 0.038),
    "internal_consistency": StepModel(208, 83, 5, 0.044),
    # the same, after issue 18's columnar reads (benchmarks/rom_scaling.py --steps change
    # interrater agreement model_data): peaks 2,335 / 4,440 / 8,674 MiB (change), 1,065 / 1,578 /
    # 2,705 (interrater), 2,375 / 3,948 / 7,673 (agreement), 2,095 / 3,920 / 7,355 (model_data)
    "change": StepModel(420, 119, 5, 0.016),
    "interrater": StepModel(546, 13, 5, 0.022),
    "agreement": StepModel(543, 44, 5, 0.014),
    "model_data": StepModel(404, 102, 5, 0.039),
    # model_specification reads only its dataset now: its first line, fitted on the whole score
    # table as input, claims 779 MB at a 100,000-client dataset's 2.3 MB (measured: 357 MiB)
    # refitted to the datasets (issue 18's 100,000-client run: session-level fits peaked at
    # 1,215-1,371 MiB for 3.5 MB of dataset, 25-27 s; client-level ones 360-370 MiB): the base
    # of the small runs and the slope through the largest peak
    "model_fit": StepModel(388, 268, 5, 0.12),
    "model_specification": StepModel(257, 159, 5, 0.05),
    # measured peaks stay at the interpreter's ~260 MiB up to 10,000 clients (slope 0): the
    # slope is the smallest any other step showed, so that ten times the data still fits.
    # Time: a batch reweights the therapists' cross-products (alliance.lmm.reweight): 3.9-4.1 s
    # for 2.41 MB at 100,000 clients; up to 4,000 rows (ROW_REFITS_UP_TO) it refits the rows,
    # 30-60 ms a replicate: a batch of 5,000 replicates within the 5-minute start
    "model_bootstrap_batch": StepModel(278, 25, 5, 0.028),
    # session-level models at 100,000 clients: 1,040 MiB / 15.9 s for 8.0 MB (trait_state) and
    # 1,203 MiB / 20.0 s for 18.6 MB (within_between): the line through those two peaks
    "model_diagnostics": StepModel(963, 16, 5, 0.031),
}

#: model_diagnostics with leave-one-therapist-out influence: 44.3 s for the 5,000 therapists of
#: the 100,000-client study (2.41 MB of input); on that study's first 1,250, 2,500 and 5,000
#: therapists 9.8, 19.0 and 40.4 s (nearly linear), but every refit also sums over all the
#: therapists, which will tell at larger sizes: the power 1.5 as a bound
INFLUENCE_MODEL = StepModel(963, 16, 5, 0.198, time_exponent=1.5)

#: measured peaks are multiplied by this: a job's memory limit must not be its measured peak
MEMORY_HEADROOM = 1.25
#: measured times are multiplied by this: cluster nodes and file systems are slower than a laptop
TIME_HEADROOM = 2.0
#: how much larger a table is as CSV than as Parquet (the generated study of benchmarks/rom_scale.py:
#: 17.4 MB of CSV against 2.5 MB of Parquet at 10,000 clients)
TEXT_PER_PARQUET = 6.9
#: file endings read as text tables
TEXT_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")


def input_megabytes(paths: Iterable[str | os.PathLike]) -> float:
    """The size of a job's input files in Parquet megabytes (text tables scaled down).

    A missing file raises ``FileNotFoundError``: Snakemake then postpones the resource until
    the job's input exists (it evaluates resources again just before it starts the job).
    """
    total = 0.0
    for path in paths:
        size = os.path.getsize(path) / 2**20
        total += size / TEXT_PER_PARQUET if str(path).lower().endswith(TEXT_SUFFIXES) else size
    return total


def step_memory_mb(rule: str, input_mb: float, attempt: int = 1) -> int:
    """The memory (MB) rule ``rule`` claims for ``input_mb`` Parquet megabytes of input."""
    model = _model(rule)
    return math.ceil(MEMORY_HEADROOM * (model.base_mb + model.mb_per_input_mb * input_mb)) * max(attempt, 1)


def step_runtime_minutes(rule: str, input_mb: float, attempt: int = 1) -> int:
    """The wall time (minutes) rule ``rule`` claims for ``input_mb`` Parquet megabytes of input."""
    return _minutes(_model(rule), input_mb, attempt)


def influence_runtime_minutes(input_mb: float, attempt: int = 1) -> int:
    """The wall time (minutes) of model diagnostics with leave-one-therapist-out influence."""
    return _minutes(INFLUENCE_MODEL, input_mb, attempt)


def _minutes(model: StepModel, input_mb: float, attempt: int) -> int:
    minutes = TIME_HEADROOM * (model.base_minutes + model.minutes_per_input_mb * input_mb**model.time_exponent)
    return math.ceil(minutes) * max(attempt, 1)


def _model(rule: str) -> StepModel:
    if rule not in STEP_MODELS:
        raise ValueError(f"rule {rule!r} has no measured resource model (alliance.job_resources.STEP_MODELS)")
    return STEP_MODELS[rule]
