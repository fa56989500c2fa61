"""Experiment tracking: the MLflow server behind hub auth, with per-user tenancy."""
