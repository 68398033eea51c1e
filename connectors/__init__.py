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
(re-drive), `upkeep`, `query` and `connection_check` are the other verbs; `derived` keeps the
typed event and latest-state tables declared under a stream in step with its raw table
(`derive`, `audit_derived`); `errors` is the catalogue of what can go wrong, `retry` the one
way to wait for transient ones.
"""

from connectors.config import (
    ConnectionConfig,
    DerivedConfig,
    LakeportConfig,
    StreamConfig,
    config_path,
    load_config,
)
from connectors.connection_check import ConnectionReport, check_connection
from connectors.coverage import (
    AuditResult,
    PartitionStatus,
    StreamStatus,
    Window,
    WindowCoverage,
    WindowState,
    audit,
    covered_windows,
    dead_letters_since,
    first_record_time,
    last_ingest,
    status,
    window_coverage,
)
from connectors.dead_letters import RedriveReport, redrive
from connectors.delta_store import DeltaStore
from connectors.derived import (
    DerivedAudit,
    DerivedStatus,
    DerivedTable,
    DeriveReport,
    Reconciliation,
    audit_derived,
    derive,
    derived_status,
    derived_tables,
    find_derived,
    reconcile,
    time_window,
)
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
    ScratchSpaceError,
    StorageUnavailable,
    TransientError,
    UsageError,
    UserError,
)
from connectors.ingest import RunReport, offset_window, run_forward, run_time_window, run_window
from connectors.kafka_client import client_settings, range_consumer, rdkafka_logger
from connectors.ledger import Ledger, LedgerUpdate, PartitionLedger, read_ledger
from connectors.planner import Mode, Plan
from connectors.progress import EveryFewSeconds, Progress, ProgressHook, TerminalProgress
from connectors.query import run_query
from connectors.ranges import OffsetRange, PartitionMarks, Partitions, Shard, Spans
from connectors.stream import Stream
from connectors.table_schema import StreamSchema, load_schema
from connectors.upkeep import UpkeepReport, checkpoint, compact, vacuum
from connectors.version import __version__
from connectors.writer import TableWriter, Write, append_rows, replace_window

__all__ = [
    "AccessDenied",
    "AuditResult",
    "BrokerUnavailable",
    "ConcurrentChange",
    "ConfigError",
    "ConnectionConfig",
    "ConnectionReport",
    "DataError",
    "DecodeError",
    "DeltaStore",
    "DeriveReport",
    "DerivedAudit",
    "DerivedConfig",
    "DerivedStatus",
    "DerivedTable",
    "EveryFewSeconds",
    "LakeportConfig",
    "LakeportError",
    "Ledger",
    "LedgerError",
    "LedgerUpdate",
    "Mode",
    "NotFound",
    "OffsetRange",
    "PartitionLedger",
    "PartitionMarks",
    "PartitionStatus",
    "Partitions",
    "Plan",
    "Progress",
    "ProgressHook",
    "Reconciliation",
    "RedriveReport",
    "RegistryUnavailable",
    "RetentionLossError",
    "RunReport",
    "SchemaError",
    "ScratchSpaceError",
    "Shard",
    "Spans",
    "StorageUnavailable",
    "Stream",
    "StreamConfig",
    "StreamSchema",
    "StreamStatus",
    "TableWriter",
    "TerminalProgress",
    "TransientError",
    "UpkeepReport",
    "UsageError",
    "UserError",
    "Window",
    "WindowCoverage",
    "WindowState",
    "Write",
    "__version__",
    "append_rows",
    "audit",
    "audit_derived",
    "check_connection",
    "checkpoint",
    "client_settings",
    "compact",
    "config_path",
    "covered_windows",
    "dead_letters_since",
    "derive",
    "derived_status",
    "derived_tables",
    "find_derived",
    "first_record_time",
    "last_ingest",
    "load_config",
    "load_schema",
    "offset_window",
    "range_consumer",
    "rdkafka_logger",
    "read_ledger",
    "reconcile",
    "redrive",
    "replace_window",
    "run_forward",
    "run_query",
    "run_time_window",
    "run_window",
    "status",
    "time_window",
    "vacuum",
    "window_coverage",
]
