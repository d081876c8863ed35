"""`iot-playground migrate`: the old backend's PostgreSQL data into the app's DynamoDB tables.

Source tables (the earlier Spring Boot backend's):
    runs(id uuid, username, status, started_at, finished_at, params jsonb
         {runId, sensorIds, duration, interval}, error_message, grafana_url)
    sensor_data(id, sensor_id, type, reading, timestamp)

Runs keep their ids. Statuses map to the API's: COMPLETED -> SUCCESS,
CANCELED -> INTERRUPTED; a RUNNING run becomes INTERRUPTED (it holds no slot
here), with an error message that says so. `grafana_url` is not copied: the
API derives it from its own settings.

Readings and runs: the old `sensor_data` has no run column (the old backend
never stored the link), and sensor ids like "sensor-3" are shared by every
run, so guessing a run from time windows would misfile readings of concurrent
runs. Readings therefore go in without a run (as readings posted without
X-Run-Id do), unless the table has a `run_id` column, which is then used.

Idempotent: runs are written with a conditional put, and readings under a key
derived from their row id, written only when absent; a second pass writes
nothing. Resumable: after each batch the last row id of each table is saved
in a checkpoint item of the runs table (see `Checkpoint`). A rerun goes on
after it; the batch that was in flight when the import stopped is read again,
and only its rows that did not make it are written.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chalicelib.params import ANONYMOUS
from chalicelib.readings import Reading
from chalicelib.run_shape import RUN_STATUSES, Run
from chalicelib.schemas import DEFAULT_READING_TYPE, RUN_ID_RE
from chalicelib.settings import Settings, load_settings
from iot_playground.common.console import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, progress_bar
from iot_playground.common.endpoints import LOCAL_CREDENTIALS
from iot_playground.common.stages import settings_for, stage_environment
from iot_playground.migration.imported import ImportedReading, ImportedReadings, ImportedRuns

if TYPE_CHECKING:
    import psycopg
    from mypy_boto3_dynamodb import DynamoDBClient

# '#' is never part of a UUID, and the item carries none of the runs table's
# index attributes, so no run list or run lookup ever sees it.
CHECKPOINT_ID = "#migration-checkpoint"
RUNS_SOURCE = "runs"
READINGS_SOURCE = "sensor_data"
STATUS_MAP = {
    "COMPLETED": "SUCCESS",
    "CANCELED": "INTERRUPTED",
    "CANCELLED": "INTERRUPTED",
    "RUNNING": "INTERRUPTED",
}
# Says why an imported run that never ended is INTERRUPTED (it can hold no slot here).
STILL_RUNNING_MESSAGE = "still RUNNING in the old backend when it was migrated"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER_TYPES = {"int2", "int4", "int8", "numeric"}

AfterBatch = Callable[[str, int], None]
"""Called with (source table, batch number) after a batch is written, before its checkpoint."""


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    postgres_url: str
    dry_run: bool = False
    since: datetime | None = None
    batch_size: int = 500
    from_start: bool = False

    @property
    def since_utc(self) -> datetime | None:
        if self.since is None or self.since.tzinfo is not None:
            return self.since
        return self.since.replace(tzinfo=UTC)


@dataclass(slots=True)
class TableCount:
    read: int = 0
    written: int = 0
    existing: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    resumed_after: str | None = None


@dataclass(slots=True)
class MigrationSummary:
    runs: TableCount = field(default_factory=TableCount)
    readings: TableCount = field(default_factory=TableCount)


class Checkpoint:
    """The last migrated row id per source table and `--since`, in one runs-table item.

    Keyed by `--since` as well: a partial import (`--since 2024-06-01`) must not
    make a later full one skip the older rows."""

    def __init__(self, client: DynamoDBClient, table_name: str):
        self._client = client
        self._table = table_name

    @staticmethod
    def scope(source: str, since: datetime | None) -> str:
        return f"{source}@{since.isoformat() if since else 'all'}"

    def last_id(self, scope: str) -> str | None:
        item = self._client.get_item(
            TableName=self._table, Key={"id": {"S": CHECKPOINT_ID}}, ConsistentRead=True
        ).get("Item", {})
        value = item.get(scope)
        return value["S"] if value else None

    def save(self, scope: str, last_id: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"id": {"S": CHECKPOINT_ID}},
            UpdateExpression="SET #scope = :id",
            ExpressionAttributeNames={"#scope": scope},
            ExpressionAttributeValues={":id": {"S": last_id}},
        )


# ---- source ----------------------------------------------------------------


def epoch_ms(value: datetime) -> int:
    # `timestamp without time zone` columns hold UTC (the session runs in UTC).
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


class SourceTable:
    """One table of the old database, read in id order, one batch at a time."""

    def __init__(self, connection: psycopg.Connection[dict[str, Any]], name: str, time_column: str):
        self._connection = connection
        self.name = name
        self._time_column = time_column
        rows = connection.execute(
            "SELECT column_name, udt_name FROM information_schema.columns "
            "WHERE table_name = %s AND table_schema = ANY(current_schemas(false)) ORDER BY ordinal_position",
            (name,),
        ).fetchall()
        if not rows:
            raise LookupError(f"the old database has no table {name!r}")
        self.columns = {row["column_name"]: row["udt_name"] for row in rows}

    def has(self, column: str) -> bool:
        return column in self.columns

    def id_value(self, text: str) -> Any:
        """A checkpointed id back in the column's own type, so `id > %s` orders correctly."""
        kind = self.columns["id"]
        if kind == "uuid":
            return uuid.UUID(text)
        return int(text) if kind in _INTEGER_TYPES else text

    def _where(self, after: Any, since: datetime | None) -> tuple[Any, list[Any]]:
        from psycopg import sql

        conditions: list[Any] = []
        values: list[Any] = []
        if after is not None:
            conditions.append(sql.SQL("id > %s"))
            values.append(after)
        if since is not None:
            conditions.append(sql.SQL("{} >= %s").format(sql.Identifier(self._time_column)))
            values.append(since)
        if not conditions:
            return sql.SQL(""), values
        return sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions), values

    def count(self, after: Any, since: datetime | None) -> int:
        from psycopg import sql

        where, values = self._where(after, since)
        query = sql.SQL("SELECT count(*) AS n FROM {} ").format(sql.Identifier(self.name)) + where
        row = self._connection.execute(query, values).fetchone()
        return int(row["n"]) if row else 0

    def batches(
        self, columns: list[str], after: Any, since: datetime | None, size: int
    ) -> Iterator[list[dict[str, Any]]]:
        from psycopg import sql

        wanted = [c for c in columns if self.has(c)]
        while True:
            where, values = self._where(after, since)
            query = (
                sql.SQL("SELECT {} FROM {} ").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in wanted), sql.Identifier(self.name)
                )
                + where
                + sql.SQL(" ORDER BY id LIMIT %s")
            )
            rows = self._connection.execute(query, [*values, size]).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1]["id"]


# ---- row conversion ----------------------------------------------------------


def _params(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            raw = json.loads(raw)
    return raw if isinstance(raw, dict) else {}


def run_from_row(row: dict[str, Any]) -> Run | str:
    """The run, or why the row cannot become one."""
    run_id = str(row["id"]).lower()
    if not RUN_ID_RE.match(run_id):
        return "id is not a UUID"
    raw_status = str(row.get("status") or "").upper()
    status = STATUS_MAP.get(raw_status, raw_status)
    if status not in RUN_STATUSES:
        return f"unknown status {raw_status or '(none)'}"
    started = row.get("started_at")
    if not isinstance(started, datetime):
        return "no started_at"
    finished = row.get("finished_at")
    finished_ms = epoch_ms(finished) if isinstance(finished, datetime) else None
    params = _params(row.get("params"))
    started_ms = epoch_ms(started)
    duration = params.get("duration")
    if not isinstance(duration, int):
        duration = max(1, ((finished_ms or started_ms) - started_ms) // 1000)
    interval = params.get("interval")
    error = row.get("error_message") or (STILL_RUNNING_MESSAGE if raw_status == "RUNNING" else None)
    return Run(
        id=run_id,
        username=str(row.get("username") or ANONYMOUS),
        status=status,
        started_ms=started_ms,
        duration=duration,
        interval=interval if isinstance(interval, int) else 1,
        sensor_ids=tuple(str(s) for s in params.get("sensorIds") or ()),
        finished_ms=finished_ms,
        error_message=str(error) if error else None,
    )


def reading_from_row(row: dict[str, Any], run_users: dict[str, str]) -> ImportedReading | str:
    """The reading, or why the row cannot become one."""
    value, taken, sensor_id = row.get("reading"), row.get("timestamp"), row.get("sensor_id")
    if value is None:
        return "no reading"
    if not isinstance(taken, datetime):
        return "no timestamp"
    if not sensor_id:
        return "no sensor_id"
    run_id = str(row["run_id"]).lower() if row.get("run_id") else None
    if run_id is not None and not RUN_ID_RE.match(run_id):
        run_id = None
    reading = Reading(
        sensor_id=str(sensor_id),
        type=str(row.get("type") or DEFAULT_READING_TYPE),
        value=float(value),
        timestamp_ms=epoch_ms(taken),
        run_id=run_id,
        user=run_users.get(run_id, ANONYMOUS) if run_id else ANONYMOUS,
    )
    return ImportedReading(str(row["id"]), reading)


# ---- the migration -----------------------------------------------------------


class Migration:
    def __init__(
        self,
        connection: psycopg.Connection[dict[str, Any]],
        runs: ImportedRuns,
        readings: ImportedReadings,
        checkpoint: Checkpoint,
        options: MigrationOptions,
        *,
        progress: Progress | None = None,
        after_batch: AfterBatch | None = None,
    ):
        self._connection = connection
        self._runs = runs
        self._readings = readings
        self._checkpoint = checkpoint
        self._options = options
        self._progress = progress
        self._after_batch = after_batch
        self.summary = MigrationSummary()

    def run(self) -> MigrationSummary:
        # Runs first: a reading that names a run should find it there.
        self._copy(
            SourceTable(self._connection, RUNS_SOURCE, "started_at"), self.summary.runs, self._write_runs
        )
        self._copy(
            SourceTable(self._connection, READINGS_SOURCE, "timestamp"),
            self.summary.readings,
            self._write_readings,
        )
        return self.summary

    def _copy(
        self,
        source: SourceTable,
        count: TableCount,
        write: Callable[[SourceTable, list[dict[str, Any]], TableCount], None],
    ) -> None:
        options = self._options
        scope = Checkpoint.scope(source.name, options.since_utc)
        saved = None if options.from_start else self._checkpoint.last_id(scope)
        count.resumed_after = saved
        after = source.id_value(saved) if saved is not None else None
        task = None
        if self._progress is not None:
            task = self._progress.add_task(source.name, total=source.count(after, options.since_utc), note="")
        columns = _COLUMNS[source.name]
        for number, rows in enumerate(
            source.batches(columns, after, options.since_utc, options.batch_size), 1
        ):
            count.read += len(rows)
            write(source, rows, count)
            if self._after_batch is not None:
                self._after_batch(source.name, number)
            if not options.dry_run:
                self._checkpoint.save(scope, str(rows[-1]["id"]))
            if self._progress is not None and task is not None:
                self._progress.advance(task, len(rows))

    def _write_runs(self, _: SourceTable, rows: list[dict[str, Any]], count: TableCount) -> None:
        for row in rows:
            run = run_from_row(row)
            if isinstance(run, str):
                count.skipped[run] += 1
            elif self._options.dry_run:
                if self._runs.exists(run.id):
                    count.existing += 1
                else:
                    count.written += 1
            elif self._runs.put(run):
                count.written += 1
            else:
                count.existing += 1

    def _write_readings(self, source: SourceTable, rows: list[dict[str, Any]], count: TableCount) -> None:
        run_users = self._run_users(rows) if source.has("run_id") else {}
        imported: list[ImportedReading] = []
        for row in rows:
            reading = reading_from_row(row, run_users)
            if isinstance(reading, str):
                count.skipped[reading] += 1
            else:
                imported.append(reading)
        written = self._readings.put(imported, dry_run=self._options.dry_run)
        count.written += written
        count.existing += len(imported) - written

    def _run_users(self, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Usernames of the runs these readings belong to (a reading's `user` is its run's)."""
        run_ids = sorted({str(row["run_id"]).lower() for row in rows if row.get("run_id")})
        if not run_ids:
            return {}
        found = self._connection.execute(
            "SELECT id::text AS id, username FROM runs WHERE id::text = ANY(%s)", (run_ids,)
        ).fetchall()
        return {row["id"].lower(): row["username"] for row in found if row["username"]}


_COLUMNS = {
    RUNS_SOURCE: ["id", "username", "status", "started_at", "finished_at", "params", "error_message"],
    READINGS_SOURCE: ["id", "sensor_id", "type", "reading", "timestamp", "run_id"],
}


# ---- command -----------------------------------------------------------------


def target_settings(stage: str | None) -> Settings:
    """The app's settings from the environment, or from a stage of `.chalice/config.json`."""
    return load_settings() if stage is None else settings_for(stage_environment(stage))


def target_client(settings: Settings) -> DynamoDBClient:
    import boto3

    session = boto3.session.Session()
    kwargs: dict[str, Any] = {}
    if settings.dynamodb_endpoint:
        kwargs["endpoint_url"] = settings.dynamodb_endpoint
        # A local endpoint (make run) accepts any credentials; do not demand real ones.
        if session.get_credentials() is None:
            kwargs["aws_access_key_id"] = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
            kwargs["aws_secret_access_key"] = LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
        if session.region_name is None:
            kwargs["region_name"] = LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]
    client: DynamoDBClient = session.client("dynamodb", **kwargs)
    return client


def connect(postgres_url: str) -> psycopg.Connection[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    connection = psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row)
    connection.execute("SET TIME ZONE 'UTC'")
    return connection


def run_migrate_command(
    options: MigrationOptions, *, stage: str | None, console: Console, after_batch: AfterBatch | None = None
) -> int:
    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError

    settings = target_settings(stage)
    console.print(
        f"target: runs table {settings.runs_table}, readings table {settings.readings_table}"
        + (f" at {settings.dynamodb_endpoint}" if settings.dynamodb_endpoint else "")
        + (" (dry run: nothing is written)" if options.dry_run else "")
    )
    client = target_client(settings)
    runs = ImportedRuns(client, settings.runs_table, settings.max_concurrent_runs)
    readings = ImportedReadings(client, settings.readings_table, settings.reading_ttl_days)
    progress = progress_bar(Console(stderr=True))
    outcome = EXIT_OK
    migration: Migration | None = None
    with progress:
        try:
            with connect(options.postgres_url) as connection:
                checkpoint = Checkpoint(client, settings.runs_table)
                migration = Migration(
                    connection,
                    runs,
                    readings,
                    checkpoint,
                    options,
                    progress=progress,
                    after_batch=after_batch,
                )
                migration.run()
        except KeyboardInterrupt:
            outcome = EXIT_INTERRUPTED
        except (psycopg.Error, LookupError, ClientError, BotoCoreError) as error:
            console.print(f"migration failed: {type(error).__name__}: {error}")
            outcome = EXIT_FAILED
    if migration is not None:
        render_summary(console, migration.summary, dry_run=options.dry_run)
    if outcome == EXIT_INTERRUPTED:
        console.print("interrupted: run the same command again to go on from the last checkpoint")
    return outcome


def render_summary(console: Console, summary: MigrationSummary, *, dry_run: bool) -> None:
    table = Table(title="migration summary", title_justify="left")
    table.add_column("table")
    table.add_column("read", justify="right")
    table.add_column("would write" if dry_run else "written", justify="right")
    table.add_column("already there", justify="right")
    table.add_column("skipped", justify="right")
    for name, count in ((RUNS_SOURCE, summary.runs), (READINGS_SOURCE, summary.readings)):
        table.add_row(
            name, str(count.read), str(count.written), str(count.existing), str(count.skipped.total())
        )
    console.print(table)
    for name, count in ((RUNS_SOURCE, summary.runs), (READINGS_SOURCE, summary.readings)):
        if count.resumed_after is not None:
            console.print(f"{name}: resumed after the checkpoint at id {count.resumed_after}")
        for reason, number in sorted(count.skipped.items()):
            console.print(f"{name}: skipped {number} row(s): {reason}")
