"""The `lakeport` command: run the local broker, produce samples, ingest, backfill, inspect, query."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import connectors
from connectors import (
    ConfigError,
    DeriveReport,
    LakeportConfig,
    LakeportError,
    OffsetRange,
    PartitionStatus,
    RunReport,
    Shard,
    Spans,
    Stream,
    TerminalProgress,
    UsageError,
    audit,
    audit_derived,
    check_connection,
    checkpoint,
    client_settings,
    compact,
    derive,
    derived_status,
    derived_tables,
    find_derived,
    load_config,
    redrive,
    run_forward,
    run_query,
    run_time_window,
    run_window,
    status,
    time_window,
    vacuum,
)

DEFAULT_BROKER_HOME = Path(".lakeport/broker")
DEFAULT_BROKER_PORT = 19092


def _config(args: argparse.Namespace) -> LakeportConfig:
    return load_config(args.config)


def _streams(args: argparse.Namespace, config: LakeportConfig) -> list[str]:
    return [args.stream] if args.stream else list(config.streams)


def dev_module(name: str) -> ModuleType:
    """A module of the checkout's `dev/` package (the broker, the sample events).

    Development tooling is not part of an installed lakeport; from an editable install or a
    working directory inside the checkout it is found and imported.
    """
    for root in (Path(connectors.__file__).resolve().parent.parent, *_cwd_and_parents()):
        if (root / "dev" / "__init__.py").is_file() and (root / "connectors").is_dir():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return importlib.import_module(f"dev.{name}")
    raise UsageError(
        "this command is development tooling that lives in the lakeport checkout (dev/):"
        " run it from a clone of the repository (e.g. `.venv/bin/lakeport broker start`)"
    )


def _cwd_and_parents() -> list[Path]:
    cwd = Path.cwd().resolve()
    return [cwd, *cwd.parents]


def cmd_broker(args: argparse.Namespace) -> int:
    local_broker = dev_module("local_broker")
    LocalBroker, ScramUser = local_broker.LocalBroker, local_broker.ScramUser

    home = Path(args.home)
    known = (home / "state.json").exists()
    if args.action == "start":
        if known and LocalBroker.attach(home).is_running():
            running = LocalBroker.attach(home)
            if args.port is not None and args.port != running.port:
                raise UsageError(
                    f"the broker of {home} already runs on {running.bootstrap_servers}, not on"
                    f" port {args.port}: stop it first (lakeport broker stop --home {home}), or"
                    " give another --home for a second broker"
                )
            print(f"already running: {running.bootstrap_servers}")
            return 0
        users: tuple[object, ...] = ()
        if args.secure:
            password = os.environ.get("LAKEPORT_BROKER_PASSWORD")
            if not password:
                raise ConfigError(
                    "--secure needs the password of user 'lakeport' in $LAKEPORT_BROKER_PASSWORD"
                )
            users = (ScramUser("lakeport", password),)
        port = args.port if args.port is not None else _default_broker_port(home, known)
        broker = LocalBroker(home=home, port=port, secure=args.secure, users=users)
        broker.start()
        print(broker.bootstrap_servers)
        if args.secure:
            print(
                f"SASL_SSL (SCRAM-SHA-512, user lakeport): {broker.secure_bootstrap_servers}, CA {broker.ca_file}"
            )
        return 0
    if not known:
        print(f"no broker was started from {home}")
        return 0 if args.action == "stop" else 1
    broker = LocalBroker.attach(home)
    if args.action == "stop":
        broker.stop()
        print("stopped")
        return 0
    running = broker.is_running()
    print(f"{'running' if running else 'not running'}: {broker.bootstrap_servers}")
    return 0 if running else 1


def _default_broker_port(home: Path, known: bool) -> int | None:
    """The port of $LAKEPORT_BOOTSTRAP (what lakeport.yaml connects to), else 19092; a home
    that ran before keeps its port (None: let the broker reuse it)."""
    if known:
        return None
    bootstrap = os.environ.get("LAKEPORT_BOOTSTRAP", "")
    port = bootstrap.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else DEFAULT_BROKER_PORT


def cmd_produce_sample(args: argparse.Namespace) -> int:

    samples = dev_module("sample_events")
    Awkward, notification_events = samples.Awkward, samples.notification_events
    price_events, produce_sample = samples.price_events, samples.produce_sample
    config = _config(args)
    stream = config.stream(args.stream)
    start = None
    if args.hours_ago is not None:  # recent events: Dagster shows a few windows, not months
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = hour - timedelta(hours=args.hours_ago)
    if args.kind == "prices":
        records = price_events(args.count, seed=args.seed, start=start)
    else:
        awkward = Awkward.all(args.awkward) if args.awkward else Awkward()
        records = notification_events(args.count, seed=args.seed, awkward=awkward, start=start)
    report = produce_sample(
        client_settings(config.connections[stream.connection]),
        stream.topic,
        records,
        partitions=args.partitions,
    )
    print(
        f"produced {report.records} {args.kind} events ({report.bytes / 1e6:.1f} MB) to"
        f" {report.topic} in {report.seconds:.1f} s; per partition: {report.per_partition}"
    )
    return 0


def _print_run(report: RunReport) -> None:
    per_partition: dict[int, list[tuple[int, int]]] = {}
    for r in report.ranges:
        per_partition.setdefault(r.partition, []).append((r.start, r.end))
    ranges = (  # one span list per partition, however many micro-batches landed it
        " ".join(
            f"p{p}[{start},{end})"
            for p, spans in sorted(per_partition.items())
            for start, end in Spans.of(spans)
        )
        or "nothing new"
    )
    print(
        f"{report.stream} [{report.mode}]: {report.records} rows, {report.dead} dead letters,"
        f" {report.commits} commits in {report.seconds:.2f} s"
        f" ({report.events_per_second:,.0f} events/s); table version {report.table_version}"
    )
    print(f"  ranges: {ranges}")
    if report.lag:
        print(f"  lag after run: {sum(report.lag.values())} ({report.lag})")
    for warning in report.warnings:
        print(f"  warning: {warning}")


def cmd_ingest(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.partition and args.shard:
        raise UsageError("give --partition or --shard, not both")
    if args.partition and not args.stream:
        raise UsageError("--partition needs --stream: partitions belong to one stream's topic")
    partitions = Shard.parse(args.shard) if args.shard else args.partition
    for name in _streams(args, config):
        stream = Stream.from_config(config, name)
        with TerminalProgress() as progress:
            report = run_forward(stream, args.max_records, partitions, progress)
        _print_run(report)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    stream = Stream.from_config(_config(args), args.stream)
    if args.from_time or args.to_time:
        if not (args.from_time and args.to_time):
            raise UsageError("--from and --to go together")
        start = _timestamp("--from", args.from_time)
        end = _timestamp("--to", args.to_time)
        with TerminalProgress() as progress:
            report = run_time_window(stream, start, end, args.mode, args.partition, progress)
    else:
        with TerminalProgress() as progress:
            report = run_window(stream, _offset_window(args), args.mode, progress)
    _print_run(report)
    return 0


def _offset_window(args: argparse.Namespace) -> list[OffsetRange]:
    """--partition (repeated), --from-offset and --to-offset as one window per partition."""
    if args.from_offset is None or args.to_offset is None or not args.partition:
        raise UsageError(
            "give --partition, --from-offset and --to-offset (an offset window),"
            " or --from and --to (a time window)"
        )
    if args.from_offset < 0 or args.to_offset <= args.from_offset:
        raise UsageError(
            f"--from-offset {args.from_offset} --to-offset {args.to_offset} is an empty or"
            " reversed window: --from-offset is the first offset to read, --to-offset the one"
            " after the last (so it must be larger)"
        )
    return [OffsetRange(p, args.from_offset, args.to_offset) for p in args.partition]


def _timestamp(option: str, text: str) -> datetime:
    """An ISO 8601 time with a time zone (`2026-11-01T00:00Z`)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text}: not a time; give an ISO 8601 time with a time zone,"
            " e.g. 2026-11-01T00:00Z"
        ) from None
    if value.tzinfo is None:
        raise UsageError(f"{option} {text}: give a time zone, e.g. 2026-11-01T00:00Z")
    return value


def cmd_status(args: argparse.Namespace) -> int:

    config = _config(args)
    for name in _streams(args, config):
        st = status(Stream.from_config(config, name))
        print(f"{st.stream} (topic {st.topic}, table version {st.table_version})")
        if st.broker_error:
            print(f"  broker not reachable, showing the ledger only: {st.broker_error}")
        for p in st.partitions:
            print(f"  partition {p.partition}: {_partition_line(p)}")
        for table in derived_tables(config, name):
            ds = derived_status(table)
            rewritten = {p: str(s) for p, s in ds.rewritten.items() if s}
            print(
                f"  derived {ds.table} (table version {ds.table_version}):"
                f" {ds.behind_offsets} raw offsets behind"
                + (f", rewritten since derived: {rewritten}" if rewritten else "")
            )
    return 0


def _partition_line(p: PartitionStatus) -> str:
    """Landed rows, dead letters, offsets lost to retention, holes and lag, each by its name."""
    covered = f" in {p.covered}" if p.covered else ""
    parts = [
        f"landed {p.landed:,} rows + {p.dead:,} dead letters{covered}",
        f"lost to retention {_spans(p.lost)}",
        f"holes {_spans(p.holes)}",
    ]
    if p.high is None:
        parts.append("lag unknown (broker not reachable)")
    else:
        parts.append(f"lag {p.unread:,} (high watermark {p.high:,})")
    return "; ".join(parts)


def _spans(spans: Spans) -> str:
    return f"{spans.size:,} {spans}" if spans else "0"


def cmd_check_connection(args: argparse.Namespace) -> int:

    config = _config(args)
    failed: list[tuple[str, LakeportError]] = []
    for name in _streams(args, config):
        report = check_connection(Stream.from_config(config, name))
        print(f"{name}: {'ok' if report.ok else 'FAILED'} ({report.seconds:.1f} s)")
        for step in report.steps:
            print(f"  {step}")
        if report.error is not None:
            failed.append((name, report.error))
    if failed:
        first = type(failed[0][1])  # the first failure's kind, every stream's reason
        raise first("; ".join(f"{name}: {error}" for name, error in failed))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:

    config = _config(args)
    failed = False
    for name in _streams(args, config):
        result = audit(Stream.from_config(config, name))
        verdict = "ok" if result.ok else "FAILED"
        print(f"{name}: {verdict} ({result.rows} rows, {result.dead} dead letters)")
        for problem in result.problems:
            print(f"  {problem}")
        failed |= not result.ok
        for table in derived_tables(config, name):
            checked = audit_derived(table)
            verdict = "ok" if checked.ok else "FAILED"
            print(f"{checked.table}: {verdict} ({checked.rows} rows, {checked.dead} dead letters)")
            for problem in checked.problems:
                print(f"  {problem}")
            for pending in checked.pending:
                print(f"  pending: {pending}")
            failed |= not checked.ok
    return 1 if failed else 0


def _print_derive(report: DeriveReport) -> None:
    print(
        f"{report.table}: {report.records} raw rows ({report.dead} dead letters) ->"
        f" {report.inserted} inserted, {report.updated} updated, {report.deleted} deleted"
        f" in {report.commits} commits ({report.seconds:.2f} s); table version"
        f" {report.table_version}"
    )
    if report.absorbed:
        print(f"  absorbed: {' '.join(str(r) for r in report.absorbed)}")
    if report.rederived:
        print(f"  derived again: {' '.join(str(r) for r in report.rederived)}")


def cmd_derive(args: argparse.Namespace) -> int:

    config = _config(args)
    tables = (
        [find_derived(config, args.table)] if args.table else derived_tables(config, args.stream)
    )
    if not tables:
        raise ConfigError(
            "no derived tables are configured: declare them under streams.<name>.derived"
        )
    window = _offsets(args)
    if (args.from_time or args.to_time) and (
        not (args.from_time and args.to_time) or window is not None
    ):
        raise UsageError("--from and --to go together, without offsets")
    for table in tables:
        if args.from_time:
            start, end = _timestamp("--from", args.from_time), _timestamp("--to", args.to_time)
            window = time_window(table, start, end)
        _print_derive(derive(table, window))
    return 0


def _offsets(args: argparse.Namespace) -> list[OffsetRange] | None:
    """The offset window of `--partition` (repeatable), `--from-offset` and `--to-offset`."""
    if args.from_offset is None and args.to_offset is None and not args.partition:
        return None
    if args.from_offset is None or args.to_offset is None or not args.partition:
        raise UsageError("--partition, --from-offset and --to-offset go together")
    return [OffsetRange(p, args.from_offset, args.to_offset) for p in args.partition]


def cmd_redrive(args: argparse.Namespace) -> int:

    report = redrive(Stream.from_config(_config(args), args.stream), _offsets(args))
    if not report.examined:
        print(f"{report.stream}: no dead letters to re-drive")
        return 0
    moved = "none decode now"
    if report.moved:
        where = ", ".join(
            f"partition {p}: {n}" for p, n in sorted(report.moved_per_partition.items())
        )
        moved = f"{report.moved} decode now and moved into the table ({where})"
    still = f"{report.still_dead} still fail"
    if report.errors_changed:
        still += f" ({report.errors_changed} with a new error)"
    line = f"{report.stream}: examined {report.examined} dead letters: {moved}; {still}"
    if report.finished_earlier_move:
        line += f"; finished {report.finished_earlier_move} moves an earlier re-drive left halfway"
    print(line)
    return 0


def cmd_query(args: argparse.Namespace) -> int:

    table = run_query(_config(args), args.sql)
    names = table.column_names
    rows = table.to_pylist()
    widths = [max(len(n), *(len(str(r[n])) for r in rows)) if rows else len(n) for n in names]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[n]).ljust(w) for n, w in zip(names, widths, strict=True)))
    return 0


def cmd_upkeep(args: argparse.Namespace) -> int:

    config = _config(args)
    for name in _streams(args, config):
        table = Stream.from_config(config, name).table
        for step in (compact, checkpoint, vacuum):
            report = step(table)
            details = ", ".join(f"{k} {v}" for k, v in report.details.items())
            print(f"{name}: {report.action} -> table version {report.table_version} {details}")
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """`--help` shows every option's default (options without one say what happens instead)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.required or action.default in (None, argparse.SUPPRESS):
            return text
        if action.default is False:  # a switch: off unless given
            return text
        return f"{text} (default: %(default)s)"


STREAM_HELP = "the stream (a key of `streams:` in the configuration)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakeport", description=__doc__, formatter_class=_HelpFormatter
    )
    parser.add_argument(
        "--config", help="configuration file (default: $LAKEPORT_CONFIG, else lakeport.yaml)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress, retries and librdkafka's own lines",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, description: str = ""
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=f"{help[0].upper()}{help[1:]}.{' ' + description if description else ''}",
            formatter_class=_HelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    def streams(p: argparse.ArgumentParser) -> None:
        p.add_argument("--stream", help=f"{STREAM_HELP}; every stream when not given")

    def window(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--partition", type=int, action="append", help=f"a partition {what}; repeat for more"
        )
        p.add_argument("--from-offset", type=int, help="first offset of the window")
        p.add_argument(
            "--to-offset", type=int, help="the offset after the window's last (exclusive)"
        )

    def time_window(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--from",
            dest="from_time",
            help="start of a time window (ISO 8601, e.g. 2026-11-01T00:00Z)",
        )
        p.add_argument("--to", dest="to_time", help="end of the time window (exclusive)")

    broker = command(
        "broker",
        cmd_broker,
        "run a local single-node Kafka broker (development and tests)",
        "The broker's data, logs and state live in --home; `start` on a home that already runs"
        " prints its address.",
    )
    broker.add_argument("action", choices=["start", "stop", "status"], help="what to do")
    broker.add_argument(
        "--home", default=str(DEFAULT_BROKER_HOME), help="folder of the broker's data and state"
    )
    broker.add_argument(
        "--port",
        type=int,
        help="port of its PLAINTEXT listener on 127.0.0.1 (default: the port of"
        f" $LAKEPORT_BOOTSTRAP, else {DEFAULT_BROKER_PORT}; a home that ran before keeps its"
        " port)",
    )
    broker.add_argument(
        "--secure",
        action="store_true",
        help="also open a SASL_SSL listener (user lakeport, password from"
        " $LAKEPORT_BROKER_PASSWORD)",
    )

    produce = command(
        "produce-sample",
        cmd_produce_sample,
        "produce sample Upvest events to a stream's topic",
        "Deterministic Upvest-like events (the same --seed gives the same records).",
    )
    produce.add_argument("--stream", default="notifications", help=STREAM_HELP)
    produce.add_argument(
        "--kind", choices=["notifications", "prices"], default="notifications", help="which events"
    )
    produce.add_argument("--count", type=int, default=10_000, help="how many events")
    produce.add_argument("--seed", type=int, default=7, help="random seed of the generator")
    produce.add_argument(
        "--partitions", type=int, default=6, help="partitions of the topic, if it is created"
    )
    produce.add_argument(
        "--awkward",
        type=float,
        default=0.0,
        help="rate of every awkward case (undecodable, unknown fields, long decimals...)",
    )
    produce.add_argument(
        "--hours-ago",
        type=int,
        help="first event this many hours before the current hour (default: 2026-01-05 08:00)",
    )

    ingest = command(
        "ingest",
        cmd_ingest,
        "land new records of a stream (or of all streams)",
        "Reads from what the table holds up to the high watermark seen at the start, exactly once.",
    )
    streams(ingest)
    ingest.add_argument(
        "--max-records",
        type=int,
        help="stop after about this many records (default: the stream's max_records_per_run)",
    )
    ingest.add_argument(
        "--partition",
        type=int,
        action="append",
        help="only this partition of the stream's topic (needs --stream); repeat for more",
    )
    ingest.add_argument(
        "--shard",
        metavar="INDEX/COUNT",
        help="only the partitions p with p %% COUNT == INDEX: one of COUNT workers, e.g. 0/3",
    )

    backfill = command(
        "backfill",
        cmd_backfill,
        "re-ingest an offset window or a time window of a stream",
        "Give --partition/--from-offset/--to-offset, or --from/--to (Kafka timestamps)."
        " `replace` re-reads the window and swaps it in atomically; `fill` lands only offsets"
        " the table does not hold.",
    )
    backfill.add_argument("--stream", required=True, help=STREAM_HELP)
    backfill.add_argument(
        "--mode",
        choices=["replace", "fill"],
        required=True,
        help="replace: re-read and swap the window; fill: land only what is missing",
    )
    window(backfill, "to backfill")
    time_window(backfill)

    status_ = command(
        "status",
        cmd_status,
        "coverage per partition, from the table's ledger",
        "Landed rows, dead letters, offsets lost to retention, holes and lag, per partition.",
    )
    streams(status_)
    audit_ = command(
        "audit",
        cmd_audit,
        "check that the data agrees with the ledger",
        "Scans the table and its dead letters; exit 1 when they disagree with the ledger.",
    )
    streams(audit_)

    redrive_ = command(
        "redrive",
        cmd_redrive,
        "decode dead letters again and move those that now decode into the table",
    )
    redrive_.add_argument("--stream", required=True, help=STREAM_HELP)
    window(redrive_, "whose dead letters to re-drive (all of them when not given)")

    derive_ = command(
        "derive",
        cmd_derive,
        "bring derived tables up to date (and derive an offset or time window again)",
        "Absorbs the raw rows committed since the last run and the windows the raw table"
        " rewrote; with a window, derives it again (e.g. after a change of the derived .avsc).",
    )
    streams(derive_)
    derive_.add_argument("--table", help="one derived table (default: all of --stream, or all)")
    window(derive_, "to derive again")
    time_window(derive_)

    check = command(
        "check-connection",
        cmd_check_connection,
        "connect, list the topic's partitions and offsets, try the consumer group",
        "Each step an ingest needs, in order; the first failure in plain words.",
    )
    streams(check)

    upkeep = command(
        "upkeep",
        cmd_upkeep,
        "compact, checkpoint and vacuum a stream's table",
        "Vacuum keeps at least 7 days of history; the ledger is untouched.",
    )
    streams(upkeep)

    query = command(
        "query",
        cmd_query,
        "run SQL over the lakehouse tables (DuckDB)",
        "Every configured table and its <table>_dead_letters is a view of that name.",
    )
    query.add_argument("sql", help="the SQL statement, e.g. 'SELECT count(*) FROM notifications'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        code: int = args.handler(args)
        return code
    except LakeportError as exc:
        notes = "; ".join(getattr(exc, "__notes__", ()))
        print(f"lakeport: error: {exc}" + (f" ({notes})" if notes else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
