"""`iot-playground migrate`: the old backend's PostgreSQL data into the app's DynamoDB tables.

The old tables: runs(id uuid, username, status, started_at, finished_at, params jsonb {sensorIds,
duration, interval}, error_message, grafana_url) and sensor_data(id, sensor_id, type, reading,
timestamp). Runs keep their ids; `grafana_url` is not copied (the API derives it). sensor_data has
no run column and every run shares sensor ids like "sensor-3", so a run guessed from time windows
would misfile concurrent runs' readings: they go in without a run, unless there is a `run_id`.

Idempotent: a reading's key comes from its content and its row id (its nonce), the same on every
import; only items whose key is not there yet are written. Resumable: after each batch, the last row
id of its table is saved in a checkpoint item of the runs table; a rerun goes on from there.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chalicelib.readings import Reading, ReadingRepository
from chalicelib.runs import RUN_STATUSES, Run
from chalicelib.schemas import ANONYMOUS, DEFAULT_READING_TYPE, RUN_ID_RE
from chalicelib.settings import Settings, load_settings
from chalicelib.tables import CHECKPOINT_KIND, KIND
from iot_playground.common.console import EXIT_INTERRUPTED, progress_bar
from iot_playground.common.endpoints import endpoint_client
from iot_playground.common.stages import settings_for, stage_environment

if TYPE_CHECKING:
    import psycopg
    from mypy_boto3_dynamodb import DynamoDBClient

CHECKPOINT_ID = "#migration-checkpoint"  # '#' is never part of a run id
# The old tables, runs first (a reading that names a run should find it there), and the time
# column `--since` applies to. Their names are put into the SQL as they are: constants only.
SOURCES = {"runs": "started_at", "sensor_data": "timestamp"}
# A run still RUNNING there is INTERRUPTED here (it can hold no slot), with this message.
STATUS_MAP = {"COMPLETED": "SUCCESS"} | dict.fromkeys(("CANCELED", "CANCELLED", "RUNNING"), "INTERRUPTED")
STILL_RUNNING_MESSAGE = "still RUNNING in the old backend when it was migrated"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AfterBatch = Callable[[str, int], None]  # (old table, batch number): a batch is written, not yet saved


def epoch_ms(value: datetime) -> int:
    # `timestamp without time zone` columns hold UTC (the session runs in UTC).
    return (value.replace(tzinfo=value.tzinfo or UTC) - EPOCH) // timedelta(milliseconds=1)


def run_from_row(row: dict[str, Any]) -> Run | str:
    """The run, or why the row cannot become one."""
    run_id, old_status = str(row["id"]).lower(), str(row.get("status") or "").upper()
    status = STATUS_MAP.get(old_status, old_status)
    if not RUN_ID_RE.match(run_id):
        return "id is not a UUID"
    if status not in RUN_STATUSES:
        return f"unknown status {old_status or '(none)'}"
    if not isinstance(row.get("started_at"), datetime):
        return "no started_at"
    started_ms = epoch_ms(row["started_at"])
    finished_ms = epoch_ms(row["finished_at"]) if isinstance(row.get("finished_at"), datetime) else None
    params = row.get("params")
    if isinstance(params, str):
        with contextlib.suppress(ValueError):
            params = json.loads(params)
    params = params if isinstance(params, dict) else {}
    duration, interval = params.get("duration"), params.get("interval")
    if not isinstance(duration, int):
        duration = max(1, ((finished_ms or started_ms) - started_ms) // 1000)
    error = row.get("error_message") or (STILL_RUNNING_MESSAGE if old_status == "RUNNING" else None)
    return Run(
        id=run_id,
        username=str(row.get("username") or ANONYMOUS),
        status=status,
        started_ms=started_ms,
        duration=duration,
        interval=interval if isinstance(interval, int) else 1,
        sensor_ids=tuple(str(sensor) for sensor in params.get("sensorIds") or ()),
        finished_ms=finished_ms,
        error_message=str(error) if error else None,
    )


def reading_from_row(row: dict[str, Any], run_users: dict[str, str]) -> Reading | str:
    """The reading, or why the row cannot become one."""
    if row.get("reading") is None:
        return "no reading"
    if not isinstance(row.get("timestamp"), datetime):
        return "no timestamp"
    if not row.get("sensor_id"):
        return "no sensor_id"
    run_id = str(row.get("run_id") or "").lower()
    run_id = run_id if RUN_ID_RE.match(run_id) else ""
    return Reading(
        sensor_id=str(row["sensor_id"]),
        type=str(row.get("type") or DEFAULT_READING_TYPE),
        value=float(row["reading"]),
        timestamp_ms=epoch_ms(row["timestamp"]),
        run_id=run_id or None,
        user=run_users.get(run_id, ANONYMOUS),
        nonce=f"import:{row['id']}",  # the same key on every import; two rows, two readings
    )


@dataclass(slots=True)
class TableCount:
    read: int = 0
    written: int = 0  # or, in a dry run, would be
    existing: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    resumed_after: str | None = None


@dataclass
class Migration:
    connection: psycopg.Connection[dict[str, Any]]
    client: DynamoDBClient
    settings: Settings
    progress: Progress
    dry_run: bool = False
    since: datetime | None = None  # UTC
    batch_size: int = 500
    from_start: bool = False
    after_batch: AfterBatch | None = None
    counts: dict[str, TableCount] = field(default_factory=lambda: {table: TableCount() for table in SOURCES})

    def run(self) -> None:
        for table, count in self.counts.items():
            # Per `--since` too: a partial import must not make a later full one skip older rows.
            scope = f"{table}@{self.since.isoformat() if self.since else 'all'}"
            checkpoint = self.client.get_item(
                TableName=self.settings.runs_table, Key={"id": {"S": CHECKPOINT_ID}}, ConsistentRead=True
            ).get("Item", {})
            after = count.resumed_after = None if self.from_start else checkpoint.get(scope, {}).get("S")
            task = self.progress.add_task(table, total=self._select(table, "count(*) AS n", after)[0]["n"])
            batch = 0
            while rows := self._select(table, "*", after, "ORDER BY id LIMIT %s", self.batch_size):
                batch, count.read = batch + 1, count.read + len(rows)
                self._write(table, rows, count)
                if self.after_batch is not None:
                    self.after_batch(table, batch)
                after = str(rows[-1]["id"])
                if not self.dry_run:
                    self.client.update_item(
                        TableName=self.settings.runs_table,
                        Key={"id": {"S": CHECKPOINT_ID}},
                        UpdateExpression="SET #scope = :id, #kind = :kind",
                        ExpressionAttributeNames={"#scope": scope, "#kind": KIND},
                        ExpressionAttributeValues={":id": {"S": after}, ":kind": {"S": CHECKPOINT_KIND}},
                    )
                self.progress.advance(task, len(rows))

    def _select(self, table: str, columns: str, after: str | None, rest: str = "", *values: Any) -> Any:
        # A checkpointed id is text; PostgreSQL reads it as the id column's type (psycopg sends
        # text parameters untyped), so `id > %s` orders uuids and integers alike.
        conditions = [("id > %s", after), (f'"{SOURCES[table]}" >= %s', self.since)]
        used = [(condition, value) for condition, value in conditions if value is not None]
        where = " AND ".join(["TRUE", *(condition for condition, _ in used)])
        query = f"SELECT {columns} FROM {table} WHERE {where} {rest}"
        return self.connection.execute(query, [*(value for _, value in used), *values]).fetchall()

    def _write(self, table: str, rows: list[dict[str, Any]], count: TableCount) -> None:
        users = self._run_users(rows) if table == "sensor_data" else {}
        made = [run_from_row(row) if table == "runs" else reading_from_row(row, users) for row in rows]
        count.skipped.update(reason for reason in made if isinstance(reason, str))
        items = [item for item in made if not isinstance(item, str)]
        keys: list[tuple[str, ...]] = [(i.id,) if isinstance(i, Run) else (i.pk, i.sk) for i in items]
        there = self._existing(table, keys)
        new = [item for item, key in zip(items, keys, strict=True) if key not in there]
        count.written, count.existing = count.written + len(new), count.existing + len(items) - len(new)
        if self.dry_run:
            return
        settings = self.settings
        readings = [item for item in new if isinstance(item, Reading)]
        ReadingRepository(self.client, settings.readings_table, settings.reading_ttl_days).write(readings)
        new_only = "attribute_not_exists(id)"  # never over a run there already (another migration's)
        for run in (item for item in new if isinstance(item, Run)):
            self.client.put_item(TableName=settings.runs_table, Item=run.item(), ConditionExpression=new_only)

    def _existing(self, table: str, keys: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
        """Which of these keys are in the table already (BatchGetItem, 100 keys a call)."""
        target = self.settings.runs_table if table == "runs" else self.settings.readings_table
        names, unique = ("id",) if table == "runs" else ("pk", "sk"), sorted(set(keys))
        found: set[tuple[str, ...]] = set()
        for start in range(0, len(unique), 100):
            chunk = unique[start : start + 100]
            part = [dict(zip(names, ({"S": v} for v in key), strict=True)) for key in chunk]
            request: Any = {target: {"Keys": part, "ConsistentRead": True}}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                items = response.get("Responses", {}).get(target, [])
                found |= {tuple(item[n]["S"] for n in names) for item in items}
                request = response.get("UnprocessedKeys")
        return found

    def _run_users(self, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Usernames of the runs these readings belong to (a reading's `user` is its run's)."""
        run_ids = sorted({str(row["run_id"]).lower() for row in rows if row.get("run_id")})
        if not run_ids:
            return {}
        found = self.connection.execute(
            "SELECT id::text AS id, username FROM runs WHERE id::text = ANY(%s)", (run_ids,)
        ).fetchall()
        return {row["id"].lower(): row["username"] for row in found if row["username"]}


def migrate(postgres_url: str, *, stage: str | None, console: Console, **options: Any) -> int:
    """Run the migration into the app's tables (its environment's, or those of `stage` in
    .chalice/config.json) and print its summary; the exit code. `options`: Migration's."""
    import boto3
    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError
    from psycopg.rows import dict_row

    settings = load_settings() if stage is None else settings_for(stage_environment(stage))
    where = f" at {settings.dynamodb_endpoint}" if settings.dynamodb_endpoint else ""
    where += " (dry run: nothing is written)" if options.get("dry_run") else ""
    tables = f"runs table {settings.runs_table}, readings table {settings.readings_table}"
    console.print(f"target: {tables}{where}")
    if settings.dynamodb_endpoint and boto3.session.Session().get_credentials() is None:
        client = endpoint_client(settings.dynamodb_endpoint)  # a local endpoint takes any credentials
    else:
        client = boto3.client("dynamodb", endpoint_url=settings.dynamodb_endpoint)
    if options.get("since") and not options["since"].tzinfo:
        options["since"] = options["since"].replace(tzinfo=UTC)
    progress, code = progress_bar(), 0
    migration: Migration | None = None
    with progress:
        try:
            with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as connection:
                connection.execute("SET TIME ZONE 'UTC'")
                migration = Migration(connection, client, settings, progress, **options)
                migration.run()
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except (psycopg.Error, ClientError, BotoCoreError) as error:
            console.print(f"migration failed: {type(error).__name__}: {error}")
            code = 1
    if migration is not None:
        table = Table(title="migration summary", title_justify="left")
        table.add_column("table")
        for column in ("read", "would write" if migration.dry_run else "written", "already there", "skipped"):
            table.add_column(column, justify="right")
        for name, count in migration.counts.items():
            table.add_row(name, *map(str, (count.read, count.written, count.existing, count.skipped.total())))
        console.print(table)
        for name, count in migration.counts.items():
            if count.resumed_after is not None:
                console.print(f"{name}: resumed after the checkpoint at id {count.resumed_after}")
            for reason, number in sorted(count.skipped.items()):
                console.print(f"{name}: skipped {number} row(s): {reason}")
    if code == EXIT_INTERRUPTED:
        console.print("interrupted: run the same command again to go on from the last checkpoint")
    return code
