"""Tests of the cluster back ends (Slurm, dask, shared caches); see conftest.py."""
