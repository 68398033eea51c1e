"""Table upkeep: compaction, checkpoints and vacuum, none of which may touch the ledger.

Compaction rewrites small micro-batch files into large ones with the same rows; `txn` actions
are table state, not file state, so the ledger is untouched. Vacuum only deletes files no
version within the retention references, and never less than a week, so a reader or a slow
writer holding an older snapshot is not broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deltalake import DeltaTable

from connectors.delta_store import DeltaStore
from connectors.errors import NotFound

SAFE_VACUUM_HOURS = 168


@dataclass(frozen=True)
class UpkeepReport:
    """What one upkeep step did."""

    action: str
    table_version: int
    details: Mapping[str, int | float | str]


def compact(store: DeltaStore, target_size: int = 256 * 1024 * 1024) -> UpkeepReport:
    """Merge small files; a concurrent ingestion commit wins and compaction retries next time."""
    table = _existing(store)
    metrics = table.optimize.compact(target_size=target_size)
    details = {
        "files_added": int(metrics.get("numFilesAdded", 0)),
        "files_removed": int(metrics.get("numFilesRemoved", 0)),
        "files_after": len(table.file_uris()),
    }
    return UpkeepReport("compact", table.version(), details)


def checkpoint(store: DeltaStore) -> UpkeepReport:
    """Write a checkpoint so loading the table (and its ledger) reads one file, not the log."""
    table = _existing(store)
    table.create_checkpoint()
    return UpkeepReport("checkpoint", table.version(), {})


def vacuum(store: DeltaStore, retention_hours: int = SAFE_VACUUM_HOURS) -> UpkeepReport:
    """Delete unreferenced files older than the retention (at least a week)."""
    table = _existing(store)
    removed = table.vacuum(retention_hours=max(retention_hours, SAFE_VACUUM_HOURS), dry_run=False)
    return UpkeepReport("vacuum", table.version(), {"files_deleted": len(removed)})


def _existing(store: DeltaStore) -> DeltaTable:
    table = store.open_existing()
    if table is None:
        raise NotFound(f"table {store.uri} does not exist yet: run `lakeport ingest` first")
    return table
