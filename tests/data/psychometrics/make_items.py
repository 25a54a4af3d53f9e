"""Simulate the one-factor item fixture (items.csv) used by tests/test_psychometrics.py.

Six 1-5 Likert items from a one-factor model with loadings 0.8, 0.7, 0.7, 0.6, 0.5, 0.4
(standardised latent responses cut at fixed thresholds), 400 respondents, seed 20240611.
Run: python make_items.py  (then Rscript ref_psych.R . to refresh reference.json).
"""
import numpy as np
import pandas as pd

rng = np.random.default_rng(20240611)
loadings = np.array([0.8, 0.7, 0.7, 0.6, 0.5, 0.4])
n = 400
factor = rng.standard_normal(n)
latent = factor[:, None] * loadings + rng.standard_normal((n, loadings.size)) * np.sqrt(1 - loadings ** 2)
items = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) + 1
pd.DataFrame(items, columns=[f"i{j + 1}" for j in range(loadings.size)]).to_csv("items.csv", index=False)
