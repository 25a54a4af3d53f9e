"""Simulate the fixtures of tests/data/psychometrics_ml (run once; ref_lavaan.R reads them).

twolevel.csv: 150 clients x 5 sessions (balanced), 6 items on a 1-7 scale, one factor
within (loadings .5-.8) and one between (loadings .6-.9), rounded to integers.
bifactor.csv: 500 administrations of 12 items in three declared groups of 4 (as the WAI's
task/bond/goal: items 1,2,10,12 / 3,5,7,9 / 4,6,8,11), general loadings .6, group .4.
"""
import numpy as np
import pandas as pd

rng = np.random.default_rng(20141)
J, n, k = 150, 5, 6
lam_w = np.array([.5, .6, .7, .8, .6, .7])
lam_b = np.array([.6, .7, .8, .9, .7, .8])
eta_b = rng.standard_normal(J)
client = np.repeat(np.arange(J), n)
eta_w = rng.standard_normal(J * n)
x = (4 + np.outer(eta_b[client], lam_b) + rng.normal(0, .3, (J, k))[client]
     + np.outer(eta_w, lam_w) + rng.normal(0, .7, (J * n, k)))
x = np.clip(np.round(x), 1, 7)
pd.DataFrame(x.astype(int), columns=[f"y{i + 1}" for i in range(k)]).assign(
    client=[f"C{c:03d}" for c in client]).to_csv("twolevel.csv", index=False)

groups = {"task": [1, 2, 10, 12], "bond": [3, 5, 7, 9], "goal": [4, 6, 8, 11]}
N = 500
g = rng.standard_normal(N)
y = np.empty((N, 12))
for items in groups.values():
    s = rng.standard_normal(N)
    for i in items:
        y[:, i - 1] = .6 * g + .4 * s + rng.normal(0, np.sqrt(1 - .52), N)
y = np.clip(np.round(3 + y * 1.1), 1, 5)
pd.DataFrame(y.astype(int), columns=[f"w{i + 1}" for i in range(12)]).to_csv("bifactor.csv", index=False)

# twolevel_unbalanced.csv: the two-level data with sessions dropped at random (2-5 per client),
# where MUML only approximates lavaan's full ML.
keep = np.concatenate([rng.permutation(n)[:rng.integers(2, n + 1)] + j * n for j in range(J)])
pd.read_csv("twolevel.csv").iloc[np.sort(keep)].to_csv("twolevel_unbalanced.csv", index=False)
