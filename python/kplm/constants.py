"""Constants of kplm.h: limits, defaults, the KPL's metric and dimension names, and the Level/Unit/Granularity enums."""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Mapping, Tuple


#: (MAJOR, MINOR, PATCH) of the header this binding was written against.
ABI_VERSION: Tuple[int, int, int] = (1, 2, 0)
#: Longest metric name accepted, in bytes (KPLM_NAME_MAX).
NAME_MAX = 255
#: Longest dimension value accepted, in bytes (KPLM_DIMENSION_VALUE_MAX).
DIMENSION_VALUE_MAX = 1024
#: Most (name, value) pairs of one ``dimensions=`` argument (KPLM_DIMENSIONS_MAX).
DIMENSIONS_MAX = 30
#: Bounds of the window length (KPLM_WINDOW_SECONDS_MIN / _MAX).
WINDOW_SECONDS_MIN = 1
WINDOW_SECONDS_MAX = 3600
#: Metric the library keeps by itself for puts refused with KPLM_ELIMIT.
METRIC_REFUSED = "KplmMetricsRefused"
#: Defaults filled in by kplm_config_init.
DEFAULT_UPLOAD_INTERVAL_MS = 60000.0
DEFAULT_WINDOW_SECONDS = 60
DEFAULT_MAX_METRICS = 100000
DEFAULT_EXPORT_TIMEOUT_MS = 10000.0
#: Namespace of a manager created without one (kplm_config.metric_namespace NULL).
DEFAULT_NAMESPACE = "KinesisProducerLibrary"
#: ``seconds`` of :meth:`Manager.query` for statistics since the manager was
#: created (KPLM_CUMULATIVE).
CUMULATIVE = 0

# The Kinesis Producer Library's metric names, byte for byte (KPLM_METRIC_*).
# Unit and KPL level of each: metric_unit() / metric_level().
#: Count, Detailed.
METRIC_USER_RECORDS_RECEIVED = "UserRecordsReceived"
#: Count, Detailed.
METRIC_USER_RECORDS_PENDING = "UserRecordsPending"
#: Count, Summary.
METRIC_USER_RECORDS_PUT = "UserRecordsPut"
#: Bytes, Detailed.
METRIC_USER_RECORDS_DATA_PUT = "UserRecordsDataPut"
#: Count, Summary.
METRIC_KINESIS_RECORDS_PUT = "KinesisRecordsPut"
#: Bytes, Detailed.
METRIC_KINESIS_RECORDS_DATA_PUT = "KinesisRecordsDataPut"
#: Count, Summary.
METRIC_ERRORS_BY_CODE = "ErrorsByCode"
#: Count, Summary.
METRIC_ALL_ERRORS = "AllErrors"
#: Count, Detailed.
METRIC_RETRIES_PER_RECORD = "RetriesPerRecord"
#: Count, Summary.
METRIC_USER_RECORD_EXPIRED = "UserRecordExpired"
#: Milliseconds, Summary.
METRIC_BUFFERING_TIME = "BufferingTime"
#: Milliseconds, Detailed.
METRIC_REQUEST_TIME = "RequestTime"
#: Count, Detailed.
METRIC_USER_RECORDS_PER_KINESIS_RECORD = "UserRecordsPerKinesisRecord"
#: Count, Detailed.
METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST = "KinesisRecordsPerPutRecordsRequest"
#: Count, Detailed.
METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST = "UserRecordsPerPutRecordsRequest"
#: Every KPL metric name, in the KPL's (and the header's) order.
KPL_METRICS: Tuple[str, ...] = (
    METRIC_USER_RECORDS_RECEIVED, METRIC_USER_RECORDS_PENDING, METRIC_USER_RECORDS_PUT,
    METRIC_USER_RECORDS_DATA_PUT, METRIC_KINESIS_RECORDS_PUT, METRIC_KINESIS_RECORDS_DATA_PUT,
    METRIC_ERRORS_BY_CODE, METRIC_ALL_ERRORS, METRIC_RETRIES_PER_RECORD,
    METRIC_USER_RECORD_EXPIRED, METRIC_BUFFERING_TIME, METRIC_REQUEST_TIME,
    METRIC_USER_RECORDS_PER_KINESIS_RECORD, METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST,
    METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST,
)

#: The KPL's latency metrics as distributions at 1% (SPEC §6): pass as
#: ``Manager(distributions=KPL_DISTRIBUTIONS)`` for their p50/p99.
KPL_DISTRIBUTIONS: Mapping[str, float] = MappingProxyType({METRIC_BUFFERING_TIME: 0.01, METRIC_REQUEST_TIME: 0.01})

#: The KPL's dimension names (KPLM_DIMENSION_*), used by snapshots and
#: exports when a granularity is configured.
DIMENSION_STREAM_NAME = "StreamName"
DIMENSION_SHARD_ID = "ShardId"
DIMENSION_ERROR_CODE = "ErrorCode"

_UINT32_MAX = 0xFFFFFFFF
_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


class Level(enum.IntEnum):
    """How much a manager records (``kplm_level``)."""

    #: Nothing is recorded; no thread is started and the sink is never used.
    NONE = 0
    #: ``shard_id`` and ``error_code`` are dropped: keys are (name, stream).
    SUMMARY = 1
    #: Every dimension is kept.
    DETAILED = 2


class Unit(enum.IntEnum):
    """A metric's unit, as CloudWatch names it (``kplm_unit``; :func:`unit_name`)."""

    #: "None": names the KPL does not define.
    NONE = 0
    #: "Count"
    COUNT = 1
    #: "Bytes"
    BYTES = 2
    #: "Milliseconds"
    MILLISECONDS = 3


class Granularity(enum.IntEnum):
    """KPL rollups (``kplm_granularity``, the KPL's MetricsGranularity).

    ``NONE`` (the default) reports every key as recorded, with the dimensions
    "stream", "shard", "error_code". Otherwise snapshots and exports show the
    KPL's tree with its dimension names and order (global extras,
    ``ErrorCode``, ``StreamName`` and stream extras, ``ShardId`` and shard
    extras): one line for the name alone, one with the error code, then
    (``STREAM`` and finer) one per stream, then (``SHARD``) one per shard; a
    line's statistics merge those of the keys under it.
    """

    NONE = 0
    #: The metric name alone (plus the error code and global extra dimensions).
    GLOBAL = 1
    #: Also per stream.
    STREAM = 2
    #: Also per stream and shard.
    SHARD = 3
