"""Simulated national rating study for the sparse path of alliance.lmm (tests/test_lmm_sparse.py).

10,500 clients in 100 regions, 3,500 raters (35 per region); each client is rated at 4
occasions (time 0..3), each time by a rater drawn from its region, 1% of ratings by a rater
from anywhere (audits). Crossed client x rater: 3,500 rater levels exceed the blocked
factorisation's dense level (design.MAX_DENSE = 3,000), so the fit takes alliance.lmm.sparse.

usage: python sim_sparse_crossed.py OUT.csv   (then Rscript ref_sparse_crossed.R OUT.csv DIR)
Values are rounded to 6 decimals so that the CSV round trip is exact.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

SEED = 20261206


def simulate(seed: int = SEED, n_regions: int = 100, raters_per_region: int = 35,
             clients_per_region: int = 105, k: int = 4, p_out: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_r = n_regions * raters_per_region
    n_c = n_regions * clients_per_region
    region_c = np.repeat(np.arange(n_regions), clients_per_region)
    client = np.repeat(np.arange(n_c), k)
    time = np.tile(np.arange(k), n_c).astype(float)
    rater = region_c[client] * raters_per_region + rng.integers(0, raters_per_region, len(client))
    out = rng.random(len(client)) < p_out
    rater[out] = rng.integers(0, n_r, int(out.sum()))
    sev = np.round(rng.normal(0, 1, n_c), 6)[client]
    u = rng.normal(0, [1.0, 0.3], (n_c, 2))  # client intercept and time slope
    v = rng.normal(0, 0.6, n_r)  # rater severity
    y = (20 + (-0.8 + u[client, 1]) * time + 1.5 * sev + u[client, 0] + v[rater]
         + rng.normal(0, 1.2, len(client)))
    return pd.DataFrame({"score": np.round(y, 6), "time": time, "severity": sev,
                         "client": [f"c{c:05d}" for c in client],
                         "rater": [f"r{r:04d}" for r in rater]})


if __name__ == "__main__":
    simulate().to_csv(sys.argv[1], index=False)
