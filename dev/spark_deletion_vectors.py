"""Touch a lakeport table with Spark as another engine would: deletion vectors and deleted rows.

Development tooling for the specs of tables that other writers changed (tests/fixtures and
the optional live-Spark spec). Needs the `spark` extra (pyspark 4.2.0 with delta-spark 4.4.0:
4.3.0 has no matching Delta jar) and Java 17; the Delta jars come from Maven Central.

    python -m dev.spark_deletion_vectors lakehouse/events \\
        --delete "kafka_partition = 0 AND kafka_offset >= 10 AND kafka_offset < 20"

enables `delta.enableDeletionVectors` on the table, runs the DELETE (Spark writes a deletion
vector instead of rewriting the file) and prints `DESCRIBE HISTORY` (version, operation,
userMetadata) as tab-separated lines.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def spark_session() -> Any:
    """A local Spark session with Delta Lake (about 40 s to start)."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[1]")
        .appName("lakeport-deletion-vectors")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def delete_with_deletion_vectors(table: str, where: str) -> list[tuple[int, str, str | None]]:
    """Enable deletion vectors, delete `where`, return (version, operation, userMetadata)."""
    spark = spark_session()
    try:
        target = f"delta.`{table}`"
        spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ('delta.enableDeletionVectors' = true)")
        spark.sql(f"DELETE FROM {target} WHERE {where}")
        rows = spark.sql(f"DESCRIBE HISTORY {target}").collect()
        return sorted((r["version"], r["operation"], r["userMetadata"]) for r in rows)
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="path of the Delta table")
    parser.add_argument("--delete", required=True, help="SQL condition of the rows to delete")
    args = parser.parse_args(argv)
    for version, operation, user_metadata in delete_with_deletion_vectors(args.table, args.delete):
        print(f"{version}\t{operation}\t{user_metadata}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
