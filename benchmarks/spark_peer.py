"""The Spark Structured Streaming peer: the same topic into a Delta table, as a Spark user would.

pyspark 4.2.0 with delta-spark 4.4.0 (`make bench` installs them; pyspark 4.3.0 has no matching
Delta release), the Kafka source `spark-sql-kafka-0-10_2.13:4.2.0` fetched from Maven Central
at session start, `local[2]` on this machine's two cores. Values are parsed with `from_json`
into the columns lakeport extracts (the `object` member kept as its JSON text), in one
`trigger(availableNow=True)` over the whole topic. Timed from the query's start to its end:
the session start (~40 s) is not counted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

KAFKA_SOURCE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
OBJECT_FIELDS = ("id", "user_id", "account_id", "account_group_id", "status", "currency")


def ingest_with_spark(bootstrap: str, topic: str, path: str) -> tuple[float, int, float]:
    """Seconds the streaming query took, the rows its Delta table holds, and the JVM's peak RSS
    in MiB (the JVM is not a child Python waits for, so `RUSAGE_CHILDREN` misses it)."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    builder: Any = (
        SparkSession.builder.master("local[2]")
        .appName("lakeport-bench-peer")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "2g")
    )
    spark = configure_spark_with_delta_pip(builder, extra_packages=[KAFKA_SOURCE]).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    text = T.StringType()
    envelope = T.StructType(
        [T.StructField(name, text) for name in ("id", "created_at", "type", "webhook_id", "object")]
    )
    payload = T.StructType([T.StructField(name, text) for name in OBJECT_FIELDS])
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    doc = F.from_json(F.col("value").cast("string"), envelope)
    rows = source.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").alias("kafka_key"),
        doc.alias("doc"),
    ).select(
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "kafka_key",
        F.col("doc.id").alias("id"),
        F.to_timestamp(F.col("doc.created_at")).alias("created_at"),
        F.col("doc.created_at").alias("created_at_raw"),
        F.col("doc.type").alias("type"),
        F.col("doc.webhook_id").alias("webhook_id"),
        F.col("doc.object").alias("object"),
        *(
            F.from_json(F.col("doc.object"), payload)[name].alias(f"object_{name}")
            for name in OBJECT_FIELDS
        ),
    )
    began = time.perf_counter()
    query = (
        rows.writeStream.format("delta")
        .option("checkpointLocation", f"{path}/checkpoint")
        .trigger(availableNow=True)
        .start(f"{path}/table")
    )
    query.awaitTermination()
    seconds = time.perf_counter() - began
    count = int(spark.read.format("delta").load(f"{path}/table").count())
    gateway: Any = spark.sparkContext._gateway
    jvm = _peak_rss_mib(gateway.proc.pid)
    spark.stop()
    return seconds, count, jvm


def _peak_rss_mib(pid: int) -> float:
    """A process's peak resident set (`VmHWM`), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
