"""The exact Gaussian engine: ML/REML by per-cluster and sparse block factorisations."""
