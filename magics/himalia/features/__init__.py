"""The feature engine: point-in-time training sets and online reads over a Feast repository's
data, run where the data is (a scientist's kernel, a job, a model server, the platform API).

The platform API (``himalia.hub.features``) keeps the definitions in Feast's registry and hands
out :class:`~himalia.features.spec.ViewSpec`s; this package reads the data they describe.
"""
