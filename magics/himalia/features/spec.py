"""What the feature engine needs to know about a feature view, as plain data.

The platform API builds these from Feast's registry (``ViewSpec.to_json`` travels to kernels);
nothing here imports Feast, so reading features stays cheap in a kernel or a model server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of a view: its name in the view and its Feast value type (``ValueType`` name,
    e.g. ``DOUBLE``, ``INT64``, ``STRING``, ``UNIX_TIMESTAMP``, ``BOOL``, ``FLOAT``, ``INT32``,
    ``BYTES``)."""

    name: str
    dtype: str


@dataclass(frozen=True)
class EntitySpec:
    """A join key of a view: its column name and Feast value type."""

    name: str
    dtype: str


@dataclass(frozen=True)
class ViewSpec:
    """A batch feature view over a Parquet source.

    ``path`` is the Parquet file (or directory of files) of the view's batch source.
    ``timestamp_field`` and ``created_timestamp_column`` are column names in the source as
    Feast has them; ``field_mapping`` renames source columns (source name -> view name) before
    anything else, as Feast does. ``ttl_seconds`` of 0 means values never expire.
    """

    name: str
    path: str
    timestamp_field: str
    join_keys: tuple[EntitySpec, ...]
    features: tuple[FeatureSpec, ...]
    created_timestamp_column: str = ""
    field_mapping: dict[str, str] = field(default_factory=dict)
    ttl_seconds: float = 0
    owner: str = ""

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_json(self) -> dict:
        data = asdict(self)
        data["join_keys"] = list(data["join_keys"])
        data["features"] = list(data["features"])
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ViewSpec":
        return cls(
            name=data["name"],
            path=data["path"],
            timestamp_field=data["timestamp_field"],
            join_keys=tuple(EntitySpec(**key) for key in data["join_keys"]),
            features=tuple(FeatureSpec(**spec) for spec in data["features"]),
            created_timestamp_column=data.get("created_timestamp_column") or "",
            field_mapping=dict(data.get("field_mapping") or {}),
            ttl_seconds=float(data.get("ttl_seconds") or 0),
            owner=data.get("owner", ""),
        )


def parse_ref(ref: str) -> tuple[str, str]:
    """``"view:feature"`` -> ``("view", "feature")``; ValueError with the expected form."""
    view, sep, feature = ref.partition(":")
    if not sep or not view or not feature or ":" in feature:
        raise ValueError(f"feature reference {ref!r} is not of the form 'view:feature'")
    return view, feature
