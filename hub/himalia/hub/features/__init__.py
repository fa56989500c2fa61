"""The feature store: Feast definitions in a SQL registry in the API database, a catalog with
statistics and freshness, online values written by the platform, training sets computed by
the feature engine (``himalia.features``) where the data is."""
