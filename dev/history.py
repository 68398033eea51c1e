"""A long table history in seconds: one Delta commit per row, written as commit files directly.

Fixed per-run costs (loading the table, reading the ledger, planning) grow with the number of
commits, so tests and benchmarks need tables of thousands of commits. Built through lakeport's
own writer, each commit costs 40-130 ms; written here as files, 10,000 take well under a minute.
Each commit holds the `add` of a one-row Parquet file and exactly the ledger update
(`LedgerUpdate.transactions()`) a one-record forward run would make; a checkpoint every 100
commits, like delta-rs's default. The result is a valid lakeport table: audit passes on it and
ingestion continues after it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from connectors import Ledger, LedgerUpdate, OffsetRange, read_ledger


def synthesize_commits(table_uri: str, topic: str, rows: pa.Table) -> int:
    """Append one commit per row of `rows` (rows of this table's layout) to an existing local
    table; returns the table version after the last one."""
    root = Path(table_uri)
    table = DeltaTable(table_uri)
    ledger = read_ledger(table, topic)
    version = table.version()
    for i in range(rows.num_rows):
        row = rows.slice(i, 1)
        p = row["kafka_partition"][0].as_py()
        o = row["kafka_offset"][0].as_py()
        update = LedgerUpdate(ledger)
        update.add(OffsetRange(p, o, o + 1), 1)
        name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        pq.write_table(row, root / name, compression="snappy")
        now = int(time.time() * 1000)
        actions = [
            {
                "commitInfo": {
                    "timestamp": now,
                    "operation": "WRITE",
                    "operationParameters": {"mode": "Append"},
                    **update.commit_metadata("forward"),
                }
            },
            {
                "add": {
                    "path": name,
                    "partitionValues": {},
                    "size": (root / name).stat().st_size,
                    "modificationTime": now,
                    "dataChange": True,
                    "stats": json.dumps({"numRecords": 1}),
                }
            },
            *(
                {"txn": {"appId": t.app_id, "version": t.version, "lastUpdated": t.last_updated}}
                for t in update.transactions()
            ),
        ]
        version += 1
        log = root / "_delta_log" / f"{version:020d}.json"
        log.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        ledger = Ledger(topic, {**ledger.partitions, **update.after}, version)
        if version % 100 == 0:
            DeltaTable(table_uri).create_checkpoint()
    return version
