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
import os
from pathlib import Path

import pandas as pd

from alliance.report.style import new_figure

# Jupyter starts the kernel in notebooks/; everything is read from the project folder.
if Path.cwd().name == "notebooks":
    os.chdir(Path.cwd().parent)
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

# %% [markdown]
# ### Why Table 1 shows another r and another n
# Table 1 (`results/tables/descriptives.md`, row "Post-treatment PHQ-9 total") correlates early
# alliance with a stricter *post-treatment* score: the last PHQ-9 **after** the early-alliance
# sessions. A client whose only PHQ-9, or whose last one, falls within sessions 1–3 has no
# post-treatment score there, while the quick look above uses that early score as "last". The
# package's own client-level data (`alliance.models.client_level_data`, what the tables and
# models use) reproduce Table 1's n and r:

# %%
from alliance.models import client_level_data

client_data = client_level_data(scores, ("phq9", "client", "total"), ("wai_sr", "client", "total"))
table_pairs = client_data[["early_alliance", "post"]].dropna()
r_table = table_pairs["early_alliance"].corr(table_pairs["post"])
set_aside = len(both) - len(table_pairs)
print(f"Table 1's definition: r = {r_table:.2f} over {len(table_pairs)} clients "
      f"({set_aside} clients without a PHQ-9 after session 3 are left out)")
table1 = (RESULTS / "tables" / "descriptives.md").read_text(encoding="utf-8")
post_row = next(line for line in table1.splitlines() if "Post-treatment" in line)
print("Table 1:", post_row)
assert f"| {len(table_pairs)} |" in post_row

# %% [markdown]
# The report's landing page shows a third client-level r. It comes from the within/between
# model (Model 5), where each client's **mean** alliance over all sessions predicts the
# session-by-session PHQ-9, beside the within-client part; it is converted from that model's t
# statistic (r = t/√(t² + df)), oriented so that a positive r means fewer symptoms with a
# better alliance, and counts the clients with at least one session in that model (a PHQ-9
# with an alliance rating in the session before). So it is neither of the raw correlations
# above:

# %%
import json

model5 = json.loads((RESULTS / "models" / "within_between" / "fit.json").read_text(encoding="utf-8"))
between = next(e for e in model5["alliance_effects"] if e["term"] == "a_cm")
print(f"Model 5, between clients: r = {between['estimate']:.2f} over {between['n']} {between['n_unit']}")
