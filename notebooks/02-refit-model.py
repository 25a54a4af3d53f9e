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
# # Refitting a model from the results
#
# Run from the project folder after `make run`. A reader who doubts a number in a table can
# rebuild the model from the written results alone: `results/models/within_between/fit.json`
# says which model was fitted (formula, REML or ML, how its variables were derived), and
# `results/scores/scores.parquet` holds the scores it was fitted to. Here the data are rebuilt
# with the package's public functions, the ones the workflow itself calls
# (`alliance.models.session_level_data`, `alliance.models.within_between_data`), the model is
# refitted with `alliance.lmm.fit`, and the estimates are checked against `fixed_effects.csv`.

# %%
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from alliance import lmm
from alliance import models as M

# Jupyter starts the kernel in notebooks/; everything is read from the project folder.
if Path.cwd().name == "notebooks":
    os.chdir(Path.cwd().parent)
RESULTS = Path("results")
MODEL = "within_between"
folder = RESULTS / "models" / MODEL
info = json.loads((folder / "fit.json").read_text(encoding="utf-8"))
written = pd.read_csv(folder / "fixed_effects.csv", float_precision="round_trip").set_index("term")
print(info["label"])
print(info["formula"], "| REML" if info["reml"] else "| ML", "| engine:", info["engine"])
written

# %% [markdown]
# ## The model's data, rebuilt from the scores
# `fit.json` keeps the settings the data were derived with (outcome, alliance, covariates,
# detrending); with them the session-level data (one row per client and session) and the
# within- and between-client parts of the alliance are derived again.

# %%
settings = info["settings"]
scores = pd.read_parquet(RESULTS / "scores" / "scores.parquet")
clients = pd.read_parquet(RESULTS / "interim" / "clients.parquet")
sessions = M.session_level_data(scores, tuple(settings["outcome"]), tuple(settings["alliance"]), clients,
                                settings.get("covariates") or [])
data = M.within_between_data(sessions, detrend=bool(settings.get("detrend", False)))
data[["session", "symptoms", "alliance", "a_cw", "a_cw_lag", "a_cm"]].describe().round(2)

# %% [markdown]
# ## Refit and compare
# The same formula and criterion; every estimate, standard error and Satterthwaite df must
# agree with the file to a relative 1e-8 (the file holds 17 significant digits).

# %%
refit = lmm.fit(info["formula"], data, reml=bool(info["reml"]))
print(f"{refit.nobs} observations, groups {refit.ngroups}, converged {refit.converged}")
assert refit.nobs == info["nobs"] and refit.ngroups == info["ngroups"]
comparison = pd.DataFrame({"file": written["estimate"], "refit": refit.fixed_effects["estimate"]})
comparison["relative difference"] = (comparison["refit"] - comparison["file"]).abs() / comparison["file"].abs()
for column in ("estimate", "se", "df"):
    np.testing.assert_allclose(refit.fixed_effects.loc[written.index, column], written[column], rtol=1e-8, atol=0)
comparison

# %% [markdown]
# ## Conditional modes of the random effects
# The clients' random intercepts and session slopes and the therapists' random intercepts
# (best linear unbiased predictions). Shrinkage pulls them towards zero, so their spread is
# smaller than the estimated standard deviations of `random_effects.csv`.

# %%
modes = {(group, term): values for group, frame in refit.ranef.items() for term, values in frame.items()}
spread = pd.DataFrame({f"{group}: {term}": values.describe() for (group, term), values in modes.items()}).T
variance = pd.read_csv(folder / "random_effects.csv", float_precision="round_trip")
standard_deviations = variance[variance["term2"].isna()].set_index(["group", "term1"])["sd"]
spread["estimated SD"] = [standard_deviations[key] for key in modes]
spread

# %%
fig, axes = plt.subplots(1, len(modes), figsize=(3.2 * len(modes), 3.2))
for ax, ((group, term), values) in zip(np.atleast_1d(axes), modes.items()):
    ax.hist(values, bins=30, color="0.4")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title(f"{group}: {term}")
    ax.set_xlabel("conditional mode")
np.atleast_1d(axes)[0].set_ylabel("count")
fig.tight_layout()
