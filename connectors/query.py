"""SQL over the lakehouse: every configured table (raw, derived, dead letters) as a DuckDB view.

DuckDB reads each Delta table through its Arrow dataset, so no DuckDB extension has to be
downloaded (which fails offline); Polars (`scan_delta`) and DataFusion read the same tables.
"""

from __future__ import annotations

from typing import cast

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from connectors.config import LakeportConfig


def arrow_dataset(table: DeltaTable) -> ds.Dataset:
    """The table's Arrow dataset, its string columns typed as string views, for DuckDB.

    delta-rs 1.6's MERGE (derived tables) writes strings as Arrow `string_view`, and pyarrow
    26 cannot compare `string` with `string_view`: a filter DuckDB pushes into
    `to_pyarrow_dataset()` fails. Declared as views, plain-string files are cast as they are
    read and DuckDB passes view literals, so filters work on files of either kind.
    """
    plain = cast(ds.FileSystemDataset, table.to_pyarrow_dataset())  # what delta-rs builds
    schema = pa.schema(
        [f.with_type(pa.string_view()) if f.type == pa.string() else f for f in plain.schema]
    )
    return ds.FileSystemDataset(list(plain.get_fragments()), schema, plain.format, plain.filesystem)


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
                dataset = arrow_dataset(DeltaTable(uri, storage_options=options))
            except TableNotFoundError:
                continue
            con.register(name, dataset)
    return con


def run_query(config: LakeportConfig, sql: str) -> pa.Table:
    result: pa.Table = connect(config).sql(sql).to_arrow_table()
    return result
