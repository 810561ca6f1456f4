"""The data a manager hands out: MetricKey, Snapshot, Event and Statistics (immutable copies of the C data)."""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, NamedTuple, Optional, Tuple, Union

from ._convert import _decode, _dims_from_c
from ._native import KplmEvent, KplmSnapshot, KplmStatistics
from .constants import Level

_DIM_FIELDS = (("stream", "stream"), ("shard", "shard_id"), ("error_code", "error_code"))
_DIM_TO_FIELD = dict(_DIM_FIELDS)


@dataclasses.dataclass(frozen=True)
class MetricKey:
    """Identity of a metric: name plus optional dimensions (hashable).

    ``extra`` holds dimensions this binding has no field for: the
    free-form dimensions of ``dimensions=`` (by name, bytewise), the extra
    dimensions of :meth:`Manager.add_dimension`, and every dimension of a
    line shown with a :class:`Granularity` (whose names are the KPL's
    ``StreamName``, ``ShardId``, ``ErrorCode``). It is empty for every key of
    a manager with neither.
    """

    name: str
    stream: Optional[str] = None
    shard_id: Optional[str] = None
    error_code: Optional[str] = None
    extra: Tuple[Tuple[str, str], ...] = ()

    def dimensions(self) -> Tuple[Tuple[str, str], ...]:
        """The key rendered as the library does: stream, shard, error_code (absent omitted)."""
        dims = []
        for dim_name, field in _DIM_FIELDS:
            value = getattr(self, field)
            if value:  # "" is the same as absent
                dims.append((dim_name, value))
        return tuple(dims) + tuple(self.extra)

    @classmethod
    def from_dimensions(cls, name: str, dimensions: Iterable[Tuple[str, str]]) -> "MetricKey":
        """Rebuild a key from a name and rendered dimensions."""
        fields: Dict[str, str] = {}
        extra = []
        for dim_name, value in dimensions:
            field = _DIM_TO_FIELD.get(dim_name)
            if field is None or field in fields:
                extra.append((dim_name, value))
            else:
                fields[field] = value
        return cls(name, extra=tuple(extra), **fields)

    def formed(self, level: Union[Level, int]) -> "MetricKey":
        """The key the library forms from this one at ``level`` ("" → None, SUMMARY drops shard and error_code)."""
        stream = self.stream or None
        if int(level) == Level.SUMMARY:
            return MetricKey(self.name, stream, extra=self.extra)
        return MetricKey(self.name, stream, self.shard_id or None, self.error_code or None, self.extra)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Statistics of one metric key over ``[window_start, window_end)`` (manager-clock seconds)."""

    name: str
    count: int
    sum: float
    min: float
    max: float
    dimensions: Tuple[Tuple[str, str], ...]
    window_start: float
    window_end: float
    timestamp_unix: float
    #: For a distribution metric, in exports: its buckets, ``(value, count)``
    #: in ascending order of value (counts add up to ``count``); else empty.
    buckets: Tuple[Tuple[float, int], ...] = ()
    #: The metric's relative accuracy when ``buckets`` is set, else 0.
    relative_accuracy: float = 0.0

    @property
    def key(self) -> MetricKey:
        """The :class:`MetricKey` this snapshot belongs to."""
        return MetricKey.from_dimensions(self.name, self.dimensions)

    @property
    def stats(self) -> Tuple[int, float, float, float]:
        """``(count, sum, min, max)``."""
        return (self.count, self.sum, self.min, self.max)

    @classmethod
    def from_c(cls, s: KplmSnapshot) -> "Snapshot":
        """Copy a C ``kplm_snapshot`` (valid only during the callback) into Python."""
        return cls(
            name=_decode(s.name),
            count=int(s.count),
            sum=s.sum,
            min=s.min,
            max=s.max,
            dimensions=_dims_from_c(s.dimensions, s.dimension_count),
            window_start=s.window_start,
            window_end=s.window_end,
            timestamp_unix=s.timestamp_unix,
            buckets=tuple((s.buckets[i].value, int(s.buckets[i].count)) for i in range(s.bucket_count)),
            relative_accuracy=s.relative_accuracy,
        )


@dataclasses.dataclass(frozen=True)
class Event:
    """One accepted observation, as handed to an eventful sink's ``record``."""

    name: str
    value: float
    timestamp: float
    dimensions: Tuple[Tuple[str, str], ...]

    @property
    def key(self) -> MetricKey:
        return MetricKey.from_dimensions(self.name, self.dimensions)

    @classmethod
    def from_c(cls, e: KplmEvent) -> "Event":
        """Copy a C ``kplm_event`` (valid only during the callback) into Python."""
        return cls(
            name=_decode(e.name),
            value=e.value,
            timestamp=e.timestamp,
            dimensions=_dims_from_c(e.dimensions, e.dimension_count),
        )


class Statistics(NamedTuple):
    """``(count, sum, min, max)`` returned by :meth:`Manager.query` and :meth:`Manager.query_name`.

    An immutable tuple, so it compares equal to the plain ``(count, sum, min,
    max)`` tuples of :attr:`Snapshot.stats`. All zero when nothing matched.
    """

    count: int  # type: ignore[assignment]  # shadows tuple.count, as it always did
    sum: float
    min: float
    max: float

    @classmethod
    def from_c(cls, s: KplmStatistics) -> "Statistics":
        """Copy a C ``kplm_statistics``."""
        return cls(int(s.count), s.sum, s.min, s.max)

