"""Write specs/data/composite_sim.csv: counts from two additive sources (the composite-link application).

y_ij ~ Poisson(exp(0.5 + 0.6 x_ij + u_j) + exp(0.3 + 0.8 w_ij)), u_j ~ N(0, 0.6^2): a cluster-level
process with a random intercept plus a background rate driven by an exposure w, 60 clusters x 8
rows, numpy seed 20261129. Deterministic: rerunning rewrites the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRUTH = {"Intercept": 0.5, "x": 0.6, "composite1(Intercept)": 0.3, "composite1(w)": 0.8, "sd(_cons)@cluster": 0.6}


def main() -> None:
    rng = np.random.default_rng(20261129)
    n_clusters, per = 60, 8
    cluster = np.repeat(np.arange(1, n_clusters + 1), per)
    x = np.round(rng.normal(size=cluster.size), 3)
    w = np.round(rng.uniform(-1.0, 1.0, size=cluster.size), 3)
    u = rng.normal(0.0, TRUTH["sd(_cons)@cluster"], n_clusters)[cluster - 1]
    mu = np.exp(TRUTH["Intercept"] + TRUTH["x"] * x + u) + np.exp(TRUTH["composite1(Intercept)"]
                                                                   + TRUTH["composite1(w)"] * w)
    y = rng.poisson(mu)
    out = Path(__file__).resolve().parents[1] / "specs" / "data" / "composite_sim.csv"
    pd.DataFrame({"cluster": cluster, "x": x, "w": w, "y": y}).to_csv(out, index=False)


if __name__ == "__main__":
    main()
