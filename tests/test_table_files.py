"""How lakeport lays out the Parquet files of a table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable

from connectors.writer import append_rows


def test_unique_columns_are_plain_encoded_and_repetitive_ones_keep_a_dictionary(
    tmp_path: Path,
) -> None:
    rows = pa.table(
        {
            "kafka_offset": pa.array(range(5000), pa.int64()),
            "id": pa.array([f"event-{i}" for i in range(5000)]),
            "type": pa.array(["ORDER.NEW", "ORDER.FILLED"] * 2500),
        }
    )
    table = DeltaTable.create(str(tmp_path), rows.schema)
    append_rows(rows)(table, CommitProperties())

    (file,) = tmp_path.glob("*.parquet")
    group = pq.ParquetFile(file).metadata.row_group(0)
    encodings = {
        group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)
    }
    assert "RLE_DICTIONARY" not in encodings["kafka_offset"]
    assert "RLE_DICTIONARY" not in encodings["id"]
    assert "RLE_DICTIONARY" in encodings["type"]
    assert DeltaTable(str(tmp_path)).to_pyarrow_table().sort_by("kafka_offset").equals(rows)
