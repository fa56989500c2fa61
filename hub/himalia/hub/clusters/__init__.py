"""Dask clusters for notebooks and jobs, through a hub-managed dask-gateway server."""
