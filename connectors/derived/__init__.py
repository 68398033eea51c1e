"""Derived tables: typed event tables and latest-state tables, kept in step with a raw table.

A stream's raw table holds one row per Kafka record with the payload as JSON text; every real
question about Upvest's events (open orders, positions per account, cash per account) needs
JSON extraction, de-duplication by event id and ordering rules. Derived tables, declared in
`lakeport.yaml` under a stream, do that once, incrementally and exactly once:

- `table`: a derived table resolved (definition, columns, decoding of raw rows, ranking);
- `run`: `derive`, which absorbs the raw rows committed since the last run and derives the
  windows the raw table rewrote (backfills, re-drives) again, one commit per batch through
  `TableWriter`, with a ledger in the raw table's layout;
- `audit`: the derived table against its raw table (ledger, counts, a recomputation from
  scratch), and per time window.
"""

from connectors.derived.audit import (
    DerivedAudit,
    DerivedStatus,
    Reconciliation,
    audit_derived,
    derived_status,
    recompute,
    reconcile,
)
from connectors.derived.run import DeriveReport, derive, time_window
from connectors.derived.table import DerivedTable, derived_tables, find_derived

__all__ = [
    "DeriveReport",
    "DerivedAudit",
    "DerivedStatus",
    "DerivedTable",
    "Reconciliation",
    "audit_derived",
    "derive",
    "derived_status",
    "derived_tables",
    "find_derived",
    "recompute",
    "reconcile",
    "time_window",
]
