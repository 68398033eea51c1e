"""SQL over the lakehouse: every configured table (raw, derived, dead letters) as a DuckDB view.

DuckDB reads each Delta table through its Arrow dataset, so no DuckDB extension has to be
downloaded (which fails offline); Polars (`scan_delta`) and DataFusion read the same tables.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from connectors.config import LakeportConfig


def connect(config: LakeportConfig) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per existing table, named as in the config."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    options = config.storage_options()
    for stream in config.streams.values():
        for name, uri in (
            (stream.table, config.table_uri(stream)),
            (f"{stream.table}_dead_letters", config.dead_letter_uri(stream)),
            *(
                (table, config.table_uri(table))
                for derived in stream.derived
                for table in (derived, f"{derived}_dead_letters")
            ),
        ):
            try:
                dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
            except TableNotFoundError:
                continue
            con.register(name, dataset)
    return con


def run_query(config: LakeportConfig, sql: str) -> pa.Table:
    result: pa.Table = connect(config).sql(sql).to_arrow_table()
    return result
