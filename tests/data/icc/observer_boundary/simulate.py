"""Simulate the observer_boundary ratings: 90 sessions, 5 coders, each session coded by 2 or 3
coders, no coder leniency (true rater variance 0), so REML lands on the boundary (lme4 reports
a singular fit). Reference values: ``Rscript ../ref_icc.R .`` (lme4 1.1-31).

usage: python simulate.py   (writes ratings.csv beside this file)
"""

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(20240611)
n_sessions, n_coders = 90, 5
rows = []
session_effect = rng.normal(0.0, 0.7, n_sessions)
for s in range(n_sessions):
    coders = rng.choice(n_coders, size=rng.integers(2, 4), replace=False)
    for c in sorted(coders):
        rating = 4.5 + session_effect[s] + rng.normal(0.0, 0.5)
        rows.append((f"S{s + 1:03d}", f"R{c + 1}", round(float(rating), 3)))
pd.DataFrame(rows, columns=["target", "rater", "rating"]).to_csv(
    Path(__file__).with_name("ratings.csv"), index=False
)
