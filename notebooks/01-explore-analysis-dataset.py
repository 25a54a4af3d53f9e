# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring the analysis dataset
#
# Run from the project folder after `make run`. Everything here reads files the workflow wrote
# under `results/`: the tidy, pseudonymised analysis dataset and the scores. Nothing here
# touches the raw data, so no original id can appear.

# %%
from pathlib import Path

import pandas as pd

from alliance.report.style import new_figure

RESULTS = Path("results")
administrations = pd.read_parquet(RESULTS / "interim" / "administrations.parquet")
scores = pd.read_parquet(RESULTS / "scores" / "scores.parquet")
administrations.head()

# %% [markdown]
# ## Sample sizes per level

# %%
levels = {
    "therapists": administrations["therapist"].nunique(),
    "clients": administrations["client"].nunique(),
    "client sessions": administrations.loc[administrations["respondent"] == "client", ["client", "session"]]
    .drop_duplicates().shape[0],
}
pd.Series(levels, name="N")

# %% [markdown]
# ## Alliance and symptoms by session
# Mean client-rated WAI-SR total and PHQ-9 total per session, with the number of clients.

# %%
totals = scores[(scores["scale"] == "total") & scores["instrument"].isin(["wai_sr", "phq9"])]
by_session = (totals.groupby(["instrument", "session"])["score"].agg(["mean", "std", "count"])
              .reset_index())
by_session.head(10)

# %%
fig, axes = new_figure(9, 3.5, ncols=2)
for ax, (instrument, rows) in zip(axes, by_session.groupby("instrument")):
    rows = rows[rows["count"] >= 20]
    ax.plot(rows["session"], rows["mean"], marker="o")
    ax.set_title(instrument)
    ax.set_xlabel("Session")
    ax.set_ylabel("Mean total score")

# %% [markdown]
# ## Does early alliance go with later symptoms?
# A first look: the correlation between clients' mean WAI-SR total over sessions 1–3 and their
# last PHQ-9 total. The multilevel models in `results/models/` do this properly.

# %%
wai = totals[(totals["instrument"] == "wai_sr") & (totals["session"] <= 3)]
early = wai.groupby("client")["score"].mean().rename("early_alliance")
phq = totals[totals["instrument"] == "phq9"].sort_values("session")
last = phq.groupby("client")["score"].last().rename("last_phq9")
both = pd.concat([early, last], axis=1).dropna()
correlation = both["early_alliance"].corr(both["last_phq9"])
print(f"r = {correlation:.3f} over {len(both)} clients")
assert len(both) > 0
