"""Value conversions between Python and C: strings to UTF-8, numbers, integers that must fit a C field."""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple, Union

from .constants import Granularity, _INT32_MAX, _INT32_MIN
from .errors import InvalidArgumentError, Status

_StrLike = Union[str, bytes, bytearray, memoryview]


def _encode(value: Optional[_StrLike], what: str) -> Optional[bytes]:
    """str → UTF-8 bytes (surrogates passed through for the library to refuse)."""
    if value is None:
        return None
    if type(value) is str:
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, (bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str):
        data = str(value).encode("utf-8", "surrogatepass")
    else:
        raise TypeError(f"{what} must be str, bytes or None, not {type(value).__name__}")
    if b"\0" in data:
        raise InvalidArgumentError(Status.EINVAL, context=f"{what} {value!r} contains a NUL byte")
    return data


def _number(value: Any) -> float:
    t = type(value)
    if t is float:
        result: float = value
        return result
    if t is int or isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"value must be a real number, not {type(value).__name__}")


def _decode(raw: Optional[bytes]) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "surrogateescape")


def _dims_from_c(ptr: Any, count: int) -> Tuple[Tuple[str, str], ...]:
    if not count or not ptr:
        return ()
    return tuple((_decode(ptr[i].name), _decode(ptr[i].value)) for i in range(count))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_in(what: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value.__index__()) if not isinstance(value, int) else int(value)
    except (AttributeError, TypeError):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if not low <= number <= high:
        raise InvalidArgumentError(Status.EINVAL,
                                   context=f"{what}={number} does not fit the C field")
    return number


def _granularity_int(value: Any) -> int:
    """A :class:`Granularity`, its ``int`` or its (case-insensitive) name, as the C int.

    Out-of-range ints are passed on for the library to refuse.
    """
    if isinstance(value, str):
        try:
            value = Granularity[value.upper()]
        except KeyError:
            raise InvalidArgumentError(Status.EINVAL,
                                       context=f"unknown granularity {value!r}") from None
    return _int_in("granularity", value, _INT32_MIN, _INT32_MAX)
