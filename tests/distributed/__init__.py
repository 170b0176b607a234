"""Tests of work spread over Dask clusters (mlmrun/distributed)."""
