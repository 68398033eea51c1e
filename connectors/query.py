"""SQL over the lakehouse: every configured table (raw, derived, dead letters) as a DuckDB view.

DuckDB reads each Delta table through its Arrow dataset (or delta-rs' scan, for tables with
deletion vectors), so no DuckDB extension has to be downloaded (which fails offline); Polars
(`scan_delta`) and DataFusion read the same tables.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from connectors.config import LakeportConfig
from connectors.delta_store import sql_source
from connectors.derived import derived_tables
from connectors.errors import StorageUnavailable, UsageError
from connectors.stream import Stream


def connect(config: LakeportConfig) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per existing table, named as in the config."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in config.streams:
        stream = Stream.from_config(config, name)
        stores = [
            (stream.config.table, stream.table),
            (f"{stream.config.table}_dead_letters", stream.dead_letters),
            *(
                (view, store)
                for derived in derived_tables(config, name)
                for view, store in (
                    (derived.name, derived.table),
                    (f"{derived.name}_dead_letters", derived.dead_letters),
                )
            ),
        ]
        for view, store in stores:
            table = store.open_existing()
            if table is not None:
                con.register(view, sql_source(table))
    return con


def run_query(config: LakeportConfig, sql: str) -> pa.Table:
    """The result of `sql`; a mistake in it is one line naming the tables there are."""
    con = connect(config)
    try:
        result: pa.Table = con.sql(sql).to_arrow_table()
    except duckdb.IOException as exc:
        raise StorageUnavailable(f"query: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        names = [row[0] for row in con.sql("SHOW TABLES").fetchall()]
        tables = ", ".join(names) or "none yet (run `lakeport ingest` first)"
        raise UsageError(
            f"query: {_first_line(exc)} (tables: {tables}); check the SQL (DuckDB dialect)"
        ) from None
    return result


def _first_line(exc: duckdb.Error) -> str:
    """DuckDB's message without the echoed query and caret lines."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept)
