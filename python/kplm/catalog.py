"""The KPL's metric catalogue, asked of the library: a metric name's unit and KPL level, a unit's CloudWatch name."""

from __future__ import annotations

from typing import Optional, Union

from ._convert import _StrLike, _encode, _int_in
from ._library import lib
from .constants import Level, Unit, _INT32_MAX, _INT32_MIN


def metric_unit(name: Optional[_StrLike]) -> Union[Unit, int]:
    """``kplm_metric_unit``: the KPL's unit of a metric name, :attr:`Unit.NONE` for any other name.

    Names compare byte for byte (``None`` gives :attr:`Unit.NONE`).
    """
    raw: int = lib().kplm_metric_unit(_encode(name, "name"))
    try:
        return Unit(raw)
    except ValueError:  # pragma: no cover - a later library's unit
        return raw


def metric_level(name: Optional[_StrLike]) -> Union[Level, int]:
    """``kplm_metric_level``: the KPL level of a metric name.

    :attr:`Level.SUMMARY` or :attr:`Level.DETAILED` for the KPL's metrics,
    :attr:`Level.DETAILED` for any other name (or ``None``).
    """
    raw: int = lib().kplm_metric_level(_encode(name, "name"))
    try:
        return Level(raw)
    except ValueError:  # pragma: no cover - a later library's level
        return raw


def unit_name(unit: Union[Unit, int]) -> str:
    """``kplm_unit_name``: the CloudWatch name of a unit ("Count"); "None" for an unknown value."""
    raw = lib().kplm_unit_name(_int_in("unit", unit, _INT32_MIN, _INT32_MAX))
    return raw.decode("ascii") if raw is not None else "None"
