"""lakeport's engine: Kafka offset ranges in, Delta tables with their offset ledger out.

Nothing here knows Dagster. `pipelines/` (the Dagster code location), the CLI, the benchmarks
and a user's own code call the names below, and only those:

    from connectors import Stream, load_config, run_forward

    stream = Stream.from_config(load_config("lakeport.yaml"), "notifications")
    report = run_forward(stream)          # everything new, exactly once
    print(report.records, report.lag)     # rows landed, records still behind per partition

One record's way, module by module: `config` (the YAML) → `stream` (a stream resolved) →
`planner` (which offsets to read) → `reader` (Kafka → Arrow) → `decoders` (Arrow → rows and
dead letters) → `writer` (one Delta commit of rows and `ledger` update) → `coverage` (what the
ledger covers, and the audit that the data agrees). `ingest` runs that loop; `dead_letters`
(re-drive), `upkeep`, `query` and `connection_check` are the other verbs; `errors` is the
catalogue of what can go wrong, `retry` the one way to wait for transient ones.
"""

from connectors.config import LakeportConfig, StreamConfig, config_path, load_config
from connectors.connection_check import ConnectionReport, check_connection
from connectors.coverage import (
    AuditResult,
    PartitionStatus,
    StreamStatus,
    audit,
    dead_letters_since,
    last_ingest,
    status,
)
from connectors.dead_letters import RedriveReport, redrive
from connectors.errors import (
    AccessDenied,
    BrokerUnavailable,
    ConcurrentChange,
    ConfigError,
    DataError,
    DecodeError,
    LakeportError,
    LedgerError,
    NotFound,
    RegistryUnavailable,
    RetentionLossError,
    SchemaError,
    StorageUnavailable,
    TransientError,
    UsageError,
    UserError,
)
from connectors.ingest import RunReport, offset_window, run_forward, run_time_window, run_window
from connectors.kafka_client import client_settings, rdkafka_logger
from connectors.ledger import Ledger, PartitionLedger, read_ledger
from connectors.planner import Mode, Plan
from connectors.query import run_query
from connectors.ranges import OffsetRange, PartitionMarks, Spans
from connectors.stream import Stream
from connectors.table_schema import StreamSchema, load_schema
from connectors.upkeep import UpkeepReport, checkpoint, compact, vacuum
from connectors.version import __version__
from connectors.writer import TableWriter

__all__ = [
    "AccessDenied",
    "AuditResult",
    "BrokerUnavailable",
    "ConcurrentChange",
    "ConfigError",
    "ConnectionReport",
    "DataError",
    "DecodeError",
    "LakeportConfig",
    "LakeportError",
    "Ledger",
    "LedgerError",
    "Mode",
    "NotFound",
    "OffsetRange",
    "PartitionLedger",
    "PartitionMarks",
    "PartitionStatus",
    "Plan",
    "RedriveReport",
    "RegistryUnavailable",
    "RetentionLossError",
    "RunReport",
    "SchemaError",
    "Spans",
    "StorageUnavailable",
    "Stream",
    "StreamConfig",
    "StreamSchema",
    "StreamStatus",
    "TableWriter",
    "TransientError",
    "UpkeepReport",
    "UsageError",
    "UserError",
    "__version__",
    "audit",
    "check_connection",
    "checkpoint",
    "client_settings",
    "compact",
    "config_path",
    "dead_letters_since",
    "last_ingest",
    "load_config",
    "load_schema",
    "offset_window",
    "rdkafka_logger",
    "read_ledger",
    "redrive",
    "run_forward",
    "run_query",
    "run_time_window",
    "run_window",
    "status",
    "vacuum",
]
