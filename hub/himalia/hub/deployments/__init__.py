"""Model deployments: MLflow models served with BentoML behind the hub at /models/<name>/."""
