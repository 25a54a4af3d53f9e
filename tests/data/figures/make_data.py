"""Writes caterpillar_data.csv (run once; the R script reads it). Seeded, so it is reproducible."""
import numpy as np
import pandas as pd

rng = np.random.default_rng(17)
sizes = [2, 3, 5, 8, 12, 20, 36, 4, 6, 9]
rows = []
client = 0
for t, size in enumerate(sizes):
    u = rng.normal(0, 1.5)
    for _ in range(size):
        client += 1
        c = rng.normal(0, 2.0)
        slope = rng.normal(-0.3, 0.2)
        x = rng.normal(0, 1)
        grp = rng.choice(["A", "B"])
        for s in range(1, int(rng.integers(2, 7)) + 1):
            y = 10 + 0.8 * x + (0.7 if grp == "B" else 0) + u + c + slope * s + rng.normal(0, 1)
            rows.append((f"T{t:02d}", f"C{client:03d}", s, x, grp, y))
pd.DataFrame(rows, columns=["therapist", "client", "session", "x", "grp", "y"]).to_csv("caterpillar_data.csv", index=False)
