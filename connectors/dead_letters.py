"""Re-drive dead letters: decode them again with today's decoder and move the ones that now work.

The move is two commits, made safe by their order: first the main table gains the rows (and
the ledger moves them from "dead" to landed, in the same commit), then the dead-letter table
drops them. A crash in between leaves records in both tables; the next re-drive finds them in
the main table and only finishes the deletion. Records that still fail keep their raw bytes
and get the new error. Running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import CommitFailedError, DeltaError

from connectors.delta_store import read_rows, source, storage_error
from connectors.errors import ConcurrentChange
from connectors.ranges import OffsetRange
from connectors.reader import RAW_SCHEMA
from connectors.retry import retrying
from connectors.stream import Stream
from connectors.writer import RACE_BACKOFF, append_rows

_KEY = ["kafka_partition", "kafka_offset"]


@dataclass
class RedriveReport:
    stream: str
    examined: int = 0
    moved: int = 0
    still_dead: int = 0
    finished_earlier_move: int = 0
    errors_changed: int = 0
    moved_per_partition: dict[int, int] = field(default_factory=dict)


def redrive(stream: Stream, window: list[OffsetRange] | None = None) -> RedriveReport:
    """Move the dead letters of `window` (all, if None) that decode now into the main table.

    When an ingestion commits to the same partitions meanwhile, the re-drive starts over:
    it is idempotent, so starting over only finishes what is left.
    """
    return retrying(
        lambda: _redrive_once(stream, window),
        f"re-drive of {stream.name}",
        RACE_BACKOFF,
        retry_on=(ConcurrentChange,),
    )


def _redrive_once(stream: Stream, window: list[OffsetRange] | None) -> RedriveReport:
    report = RedriveReport(stream.name)
    dead_table = stream.dead_letters.open_existing()
    if dead_table is None:
        return report
    dead = read_rows(dead_table, window or None)
    report.examined = dead.num_rows
    if dead.num_rows == 0:
        return report

    writer = stream.writer()
    already = _already_landed(source(writer.table, _KEY), dead)
    report.finished_earlier_move = already.num_rows
    pending = _anti_join(dead, already)

    decoded = stream.decoder().decode(pending.select(RAW_SCHEMA.names))
    if decoded.rows.num_rows:
        update = writer.update()
        for span, moved in _moved_spans(decoded.rows).items():
            update.move_dead(span, moved)
            report.moved_per_partition[span.partition] = moved
        writer.commit(
            update,
            append_rows(decoded.rows),
            "redrive",
            extra={"lakeport.stream": stream.name, "lakeport.redriven": str(decoded.rows.num_rows)},
        )
    report.moved = decoded.rows.num_rows
    report.still_dead = decoded.dead.num_rows

    changed = _changed_errors(pending, decoded.dead)
    report.errors_changed = changed.num_rows
    remove = pa.concat_tables([already, decoded.rows.select(_KEY)])
    if remove.num_rows or changed.num_rows:
        _apply_to_dead_letters(stream, remove, changed)
    return report


def _moved_spans(rows: pa.Table) -> dict[OffsetRange, int]:
    """Per partition, the span from the first to the last moved offset and how many moved."""
    stats = rows.group_by("kafka_partition").aggregate(
        [("kafka_offset", "min"), ("kafka_offset", "max"), ("kafka_offset", "count")]
    )
    return {
        OffsetRange(row["kafka_partition"], row["kafka_offset_min"], row["kafka_offset_max"] + 1): (
            row["kafka_offset_count"]
        )
        for row in stats.to_pylist()
    }


def _already_landed(main: object, dead: pa.Table) -> pa.Table:
    """Dead letters whose (partition, offset) the main table holds: an interrupted earlier move."""
    con = duckdb.connect()
    con.register("main", main)
    con.register("dead", dead.select(_KEY))
    found = con.sql("SELECT * FROM dead SEMI JOIN main USING (kafka_partition, kafka_offset)")
    table: pa.Table = found.to_arrow_table()
    return table.cast(dead.select(_KEY).schema)


def _anti_join(rows: pa.Table, drop: pa.Table) -> pa.Table:
    """`rows` without the (partition, offset) pairs of `drop`, order kept."""
    if drop.num_rows == 0:
        return rows
    con = duckdb.connect()
    con.register("rows", rows)
    con.register("drop_", drop)
    kept = con.sql(
        "SELECT * FROM rows ANTI JOIN drop_ USING (kafka_partition, kafka_offset)"
        " ORDER BY kafka_partition, kafka_offset"
    )
    table: pa.Table = kept.to_arrow_table()
    return table.cast(rows.schema)


def _changed_errors(before: pa.Table, still_dead: pa.Table) -> pa.Table:
    """Still-dead records whose error class or message differs from the stored one."""
    if still_dead.num_rows == 0:
        return still_dead
    old = before.select([*_KEY, "error_class", "error_message"]).rename_columns(
        [*_KEY, "old_class", "old_message"]
    )
    joined = still_dead.select([*_KEY, "error_class", "error_message"]).join(old, keys=_KEY)
    differs = pc.or_(
        pc.not_equal(joined["error_class"], joined["old_class"]),
        pc.not_equal(joined["error_message"], joined["old_message"]),
    )
    return joined.filter(differs).select([*_KEY, "error_class", "error_message"])


def _apply_to_dead_letters(stream: Stream, remove: pa.Table, changed: pa.Table) -> None:
    """One merge on the dead-letter table: delete moved records, update changed errors."""
    source = pa.concat_tables(
        [
            remove.append_column("moved", pa.array([True] * remove.num_rows))
            .append_column("error_class", pa.array([None] * remove.num_rows, pa.string()))
            .append_column("error_message", pa.array([None] * remove.num_rows, pa.string())),
            changed.select([*_KEY, "error_class", "error_message"]).add_column(
                2, "moved", pa.array([False] * changed.num_rows)
            ),
        ],
        promote_options="permissive",
    )

    def attempt() -> None:
        table = stream.dead_letters.open()
        try:
            (
                table.merge(
                    source=source,
                    predicate="t.kafka_partition = s.kafka_partition AND t.kafka_offset = s.kafka_offset",
                    source_alias="s",
                    target_alias="t",
                )
                .when_matched_delete(predicate="s.moved")
                .when_matched_update(
                    updates={"error_class": "s.error_class", "error_message": "s.error_message"},
                    predicate="NOT s.moved",
                )
                .execute()
            )
        except CommitFailedError as exc:
            raise ConcurrentChange(f"{stream.dead_letters.uri}: {exc}") from None
        except (OSError, DeltaError) as exc:
            raise storage_error(stream.dead_letters.uri, exc, "write to") from None

    # The merge is idempotent (delete what moved, set the new errors): a lost race just retries.
    retrying(attempt, f"update {stream.dead_letters.uri}", RACE_BACKOFF)
