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
# # Tutorial: from your export to your first model
#
# This notebook walks through one study from the files a practice-research network exports to
# a first multilevel model of the alliance–outcome association. It uses the bundled example
# study (simulated, no real person), so it runs as it is; for your own study, change the two
# names in the next cell. Start it from the project folder (`make notebook` does).
#
# The steps: **1** look at your export, **2** describe it in a config and check it,
# **3** score the questionnaires, **4** fit and read a first model.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import alliance.models as M
from alliance.cli import main as alliance

# Jupyter starts the kernel in notebooks/; everything is read from the project folder.
if Path.cwd().name == "notebooks":
    os.chdir(Path.cwd().parent)
EXPORT = Path("data/raw/example")   # the folder of your export
CONFIG = "config/config.yaml"       # the config that describes it (step 2)

# %% [markdown]
# ## 1 Your export
# An export is a folder of tables (CSV, Excel, SPSS or Stata files): here one row per client and
# session with the client's questionnaires, one with the therapists' ratings, one with observer
# ratings and one with a row per client. Look at the **columns**, not at the rows: the rows of
# a real export hold client ids, and nothing you share (a notebook included) should show them.

# %%
for path in sorted(EXPORT.glob("*.csv")):
    table = pd.read_csv(path, nrows=1000)
    items = [c for c in table.columns if c[-1].isdigit()]
    other = [c for c in table.columns if c not in items]
    print(f"{path.name}: {len(table.columns)} columns; {', '.join(other)}"
          + (f"; {len(items)} item columns ({items[0]} … {items[-1]})" if items else ""))

# %% [markdown]
# ## 2 Describe it in a config, and check it
# The config says which file holds which table, which column is the client id, the session
# number and the therapist, which items belong to which questionnaire, and which models to fit
# (every key is explained in `config/README.md`). For your own export, draft one with
#
# ```
# alliance init data/raw/my_study -o config/my_study.yaml
# ```
#
# and answer the questions it leaves in the file. Then let the package check the config and
# the data **before** any analysis: it refuses files with names, e-mail addresses or dates of
# birth, and lists every broken value with its file, row and column.

# %%
assert alliance(["validate", CONFIG]) == 0

# %% [markdown]
# ## 3 Score the questionnaires
# `alliance run CONFIG TARGET` runs the workflow up to one result: here the scores. The client
# ids are replaced by pseudonyms on the way (`results/interim/`), items are reverse-keyed and
# summed as each instrument's key says, and every score lands in one long table. Snakemake
# lists the steps it runs (nothing when the scores are up to date); 0 means every step worked.

# %%
assert alliance(["run", CONFIG, "results/scores/scores.parquet", "--cores", "2"]) == 0
scores = pd.read_parquet("results/scores/scores.parquet")
clients = pd.read_parquet("results/interim/clients.parquet")
scores.groupby(["instrument", "respondent", "scale"]).size().rename("scores").to_frame().head(12)

# %% [markdown]
# ## 4 A first model: does early alliance predict symptoms after treatment?
# One row per client: the mean client-rated alliance (WAI-SR total) over sessions 1–3, the
# first PHQ-9 total (baseline) and the last one after session 3 (post). Clients are nested in
# therapists, so the model has a random intercept for therapists:
# `post ~ early_alliance + baseline + arm + (1 | therapist)`.

# %%
data = M.client_level_data(scores, ("phq9", "client", "total"), ("wai_sr", "client", "total"),
                           covariates=["arm"], clients=clients)
result, formula = M.fit_early_outcome(data, "post", covariates=["arm"])
print(formula)
print(f"{result.nobs} clients with every variable, {result.ngroups['therapist']} therapists")
result.fixed_effects[["estimate", "se", "df", "p", "ci_low", "ci_high"]].round(3)

# %% [markdown]
# **Reading it.** `early_alliance` is the expected difference in post-treatment PHQ-9 per point
# of early alliance, for clients with the same baseline and arm: a negative estimate means
# fewer symptoms after a better early alliance. Fewer clients enter the model than the example
# has (400), because a client without a PHQ-9 after session 3 has no post score; the workflow's
# log and Methods text say how many were left out.

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.scatter(data["early_alliance"], data["post"], s=10, alpha=0.5, color="0.3")
ax.set_xlabel("Early alliance (WAI-SR total, sessions 1–3)")
ax.set_ylabel("Post-treatment PHQ-9 total")
ax.set_title("One point per client")
fig.tight_layout()

# %% [markdown]
# ## The same model in the report
# This is Model 2 of the report ("PHQ-9 post, unadjusted for early change";
# `results/models/early_phq9_post_unadjusted/`). After `make run` its estimates are on file,
# and yours are the same to the last digit. The report's main model (Model 1) adds the
# symptom change up to session 3 as a covariate, so its alliance estimate differs from yours:
# early improvement can raise the alliance, and Model 1 does not count that as the alliance's
# effect.

# %%
written = Path("results/models/early_phq9_post_unadjusted/fixed_effects.csv")
if written.exists():
    table = pd.read_csv(written, float_precision="round_trip").set_index("term")
    pd.testing.assert_series_equal(result.fixed_effects.loc[table.index, "estimate"], table["estimate"],
                                   rtol=1e-8, check_names=False)
    print("Same estimates as Model 2 of the report.")
else:
    print("Run `make run` to compare with the report's Model 2.")
