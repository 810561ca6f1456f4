"""Free-form dimensions (SPEC §5): the ``dimensions=`` argument of
:meth:`Manager.put`, :meth:`Manager.metric` and :meth:`Manager.query`, as the
``kplm_dimension`` array of ``kplm_put_dims`` and friends, and the key the
library forms from it."""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union

from ._convert import _StrLike, _decode, _encode
from ._features import require_symbol
from ._native import KplmDimension
from .constants import Level
from .model import _DIM_FIELDS, MetricKey

#: What ``dimensions=`` accepts: a mapping of dimension name to value, or an
#: iterable of (name, value) pairs. A value of ``None`` or ``""`` is an
#: absent pair.
Dimensions = Union[Mapping[_StrLike, Optional[_StrLike]], Iterable[Tuple[_StrLike, Optional[_StrLike]]]]


class EncodedDimensions:
    """A ``kplm_dimension`` array (it keeps its bytes alive) and its length."""

    __slots__ = ("array", "count", "pairs")

    def __init__(self, pairs: List[Tuple[Optional[bytes], Optional[bytes]]]) -> None:
        self.pairs = pairs
        self.count = len(pairs)
        self.array = (KplmDimension * max(1, self.count))()
        for i, (name, value) in enumerate(pairs):
            self.array[i].name = name
            self.array[i].value = value

    def key(self, name: bytes, level: Union[Level, int]) -> MetricKey:
        """The key the library forms (for :attr:`Metric.key`), assuming it
        accepted these pairs: those with a value, the others sorted by name
        bytewise, as :meth:`MetricKey.from_dimensions` reads them."""
        present = sorted((n or b"", v) for n, v in self.pairs if v)
        return MetricKey.from_dimensions(_decode(name), ((_decode(n), _decode(v)) for n, v in present)).formed(level)

def require_dimensions(lib: Any) -> None:
    """Raise :class:`StateError` when the loaded library predates
    free-form dimensions (libkplm 1.0 has no ``kplm_put_dims``)."""
    require_symbol(lib, "kplm_put_dims", "free-form dimensions (dimensions=)", "1.1")


def encode_dimensions(dimensions: Dimensions, stream: Optional[_StrLike] = None,
                      shard_id: Optional[_StrLike] = None,
                      error_code: Optional[_StrLike] = None) -> EncodedDimensions:
    """``dimensions`` (plus the seed keywords given, as their pairs) as a C
    array. Raises :class:`TypeError` for a pair that is not a (name, value)
    of strings or bytes, :class:`InvalidArgumentError` for a NUL byte; the
    library checks the rest (count, lengths, UTF-8, repeated names)."""
    items = dimensions.items() if isinstance(dimensions, Mapping) else dimensions
    pairs: List[Tuple[Optional[bytes], Optional[bytes]]] = []
    for item in items:
        try:
            dim_name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"a dimension must be a (name, value) pair, not {item!r}") from None
        pairs.append((_encode(dim_name, "dimension name"), _encode(value, "dimension value")))
    for (dim_name, field), value in zip(_DIM_FIELDS, (stream, shard_id, error_code)):
        if value is not None:
            pairs.append((dim_name.encode(), _encode(value, field)))
    return EncodedDimensions(pairs)

