"""Reference values for weighted Fleiss' kappa from irrCAC (Gwet's irrCAC in Python).

Run once in a throwaway environment, NOT the project's (the project does not depend on
irrCAC):

    python3.11 -m venv /tmp/irrvenv && /tmp/irrvenv/bin/pip install irrcac==0.4.4
    /tmp/irrvenv/bin/python make_irrcac_reference.py      # from this folder

Reads observer_incomplete.csv (written by make_psych_reference.R) and published.json;
writes irrcac_reference.json. ``CAC.fleiss()`` is Gwet's (2014) generalised Fleiss kappa
(any number of ratings per subject, agreement weights); its standard error is Gwet's
linearisation variance, its interval and p use a t distribution with n - 1 df.
``CAC.krippendorff()`` with quadratic weights is Krippendorff's alpha, interval metric.
"""

import json
from importlib.metadata import version

import numpy as np
import pandas as pd
from irrCAC.raw import CAC


def fleiss(wide: pd.DataFrame, weights: str, categories: list) -> dict:
    cac = CAC(wide, weights=weights, categories=categories, digits=15)
    est = cac.fleiss()["est"]
    return {"kappa": est["coefficient_value"], "se": est["se"], "pa": est["pa"], "pe": est["pe"],
            "ci": list(est["confidence_interval"]), "p": est["p_value"], "n_subjects": cac.n}


def alpha(wide: pd.DataFrame, weights: str, categories: list) -> dict:
    cac = CAC(wide, weights=weights, categories=categories, digits=15)
    est = cac.krippendorff()["est"]
    return {"alpha": est["coefficient_value"], "pa": est["pa"], "pe": est["pe"]}


obs = pd.read_csv("observer_incomplete.csv")
code = obs.pivot(index="target", columns="rater", values="code").astype(float)
rupture = obs.pivot(index="target", columns="rater", values="rupture").astype(float)
seven = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]

published = json.loads(open("published.json").read())
diagnoses = pd.DataFrame(np.array(published["fleiss_1971"]["data"], dtype=float))

out = {
    "irrcac_version": version("irrcac"),
    "observer_code": {w: fleiss(code, w, seven) for w in ("identity", "linear", "quadratic")},
    "observer_code_alpha_interval": alpha(code, "quadratic", seven),
    "observer_rupture": fleiss(rupture, "identity", [0.0, 1.0]),
    "observer_rupture_alpha_nominal": alpha(rupture, "identity", [0.0, 1.0]),
    "fleiss_1971": {w: fleiss(diagnoses, w, [1.0, 2.0, 3.0, 4.0, 5.0])
                    for w in ("identity", "quadratic")},
    "note": __doc__.strip().splitlines()[0],
}
with open("irrcac_reference.json", "w") as f:
    json.dump(out, f, indent=2)
