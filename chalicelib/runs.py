"""Simulation runs: the run, its item and JSON view, its storage, and the service that moves
runs through their states (start, finish, interrupt, time out) and remembers their status.

Invariant: each slots item's `running` equals the RUNNING runs it counts (all of them, or one
user's) and never exceeds its limit. A start takes both slots in the transaction that creates
the run, conditioned on the limits; every way out of RUNNING gives them back in the transaction
that changes the status, conditioned on the run still RUNNING: exactly once, however many race.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgspec
from botocore.exceptions import ClientError

from chalicelib import schemas
from chalicelib.schemas import (
    BadRequest,
    NotFound,
    RunLimitReached,
    RunNotRunning,
    Unavailable,
    UserRunLimitReached,
    ValidationFailed,
    attempts,
    aws_code,
)
from chalicelib.settings import Settings, logger
from chalicelib.tables import KIND, RUN_KIND, RUNS_BY_START, RUNS_BY_STATUS, RUNS_BY_USER, SLOTS_KIND

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RUNNING = "RUNNING"
TERMINAL_STATUSES = ("SUCCESS", "FAILED", "INTERRUPTED", "TIMEOUT")
RUN_STATUSES = (RUNNING, *TERMINAL_STATUSES)
MAX_LISTED_RUNS = 1000  # the newest runs `/api/runs/all` and the report list: never the whole history
MAX_QUERY_CALLS = 3
FILTERED_READ_LIMIT = 200
SLOTS_ID = "#slots"
# The Grafana dashboard (grafana/dashboards/, held to these names by tests/test_dashboard.py)
# and its variables, which run links fill in.
DASHBOARD_UID, DASHBOARD_SLUG = "iot-serverless", "iot-playground-serverless"
DASHBOARD_TITLE = "IoT Playground serverless"
STAGE_VARIABLE, RUN_VARIABLE, USER_VARIABLE = "Stage", "RunId", "User"
SENSOR_VARIABLE, TYPE_VARIABLE = "SensorId", "Type"


def slots_id(username: str | None = None) -> str:
    return SLOTS_ID if username is None else f"{SLOTS_ID}#{username}"


class Run(msgspec.Struct, frozen=True):
    id: str
    username: str
    status: str
    started_ms: int
    duration: int
    interval: int
    sensor_ids: tuple[str, ...]
    finished_ms: int | None = None
    error_message: str | None = None

    def is_overdue(self, grace_seconds: int, now_ms: int) -> bool:
        return self.status == RUNNING and now_ms > self.started_ms + (self.duration + grace_seconds) * 1000

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": {"S": self.id},
            KIND: {"S": RUN_KIND},
            "username": {"S": self.username},
            "status": {"S": self.status},
            "startedAt": {"S": schemas.format_ms(self.started_ms)},
            "duration": {"N": str(self.duration)},
            "interval": {"N": str(self.interval)},
            "sensorIds": {"L": [{"S": s} for s in self.sensor_ids]},
        }
        if self.finished_ms is not None:
            item["finishedAt"] = {"S": schemas.format_ms(self.finished_ms)}
        if self.error_message is not None:
            item["errorMessage"] = {"S": self.error_message}
        return item

    @staticmethod
    def from_item(item: dict[str, Any]) -> Run:
        finished, error = item.get("finishedAt"), item.get("errorMessage")
        return Run(
            id=item["id"]["S"],
            username=item["username"]["S"],
            status=item["status"]["S"],
            started_ms=schemas.parse_iso_ms(item["startedAt"]["S"]),
            duration=int(item["duration"]["N"]),
            interval=int(item["interval"]["N"]),
            sensor_ids=tuple(v["S"] for v in item.get("sensorIds", {}).get("L", [])),
            finished_ms=schemas.parse_iso_ms(finished["S"]) if finished else None,
            error_message=error["S"] if error else None,
        )


class RunParamsView(msgspec.Struct):
    runId: str
    sensorIds: list[str]
    duration: int
    interval: int


class RunView(msgspec.Struct):
    id: str
    runId: str
    username: str
    status: str
    startedAt: str
    finishedAt: str | None
    duration: int
    interval: int
    params: RunParamsView
    grafanaUrl: str
    errorMessage: str | None


# ---- storage -------------------------------------------------------------------------


class RunRepository:
    def __init__(self, client: DynamoDBClient, table: str, max_running: int, max_per_user: int):
        self._client, self._table = client, table
        self.max_running, self.max_per_user = max_running, max_per_user

    def _item(self, item_id: str, kind: str) -> dict[str, Any] | None:
        found = self._client.get_item(TableName=self._table, Key={"id": {"S": item_id}}, ConsistentRead=True)
        item: Any = found.get("Item")
        return item if item and item.get(KIND) == {"S": kind} else None

    def count_running(self, username: str | None = None) -> int:
        item = self._item(slots_id(username), SLOTS_KIND)
        return int(item["running"]["N"]) if item else 0

    def get(self, run_id: str) -> Run | None:
        item = self._item(run_id, RUN_KIND)
        return Run.from_item(item) if item else None

    def page(
        self,
        limit: int,
        start_key: dict[str, Any] | None = None,
        *,
        status: str | None = None,
        user: str | None = None,
    ) -> tuple[list[Run], dict[str, Any] | None]:
        """Newest first, in at most MAX_QUERY_CALLS calls. Each filter takes the index keyed by
        it; both: the user's runs, filtered on status (read FILTERED_READ_LIMIT at least)."""
        index, value = (RUNS_BY_STATUS, status) if status else (RUNS_BY_START, RUN_KIND)
        if user:
            index, value = RUNS_BY_USER, user
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index.name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": index.partition_key},
            "ExpressionAttributeValues": {":pk": {"S": value}},
            "ScanIndexForward": False,
        }
        if user and status:
            request["FilterExpression"] = "#status = :status"
            request["ExpressionAttributeNames"]["#status"] = "status"
            request["ExpressionAttributeValues"][":status"] = {"S": status}
        if start_key is not None and set(start_key) != {"id", index.partition_key, index.sort_key}:
            raise BadRequest("nextKey is not a valid pagination token for this query")
        found: list[dict[str, Any]] = []
        key = start_key
        for _ in range(MAX_QUERY_CALLS):
            wanted = limit + 1 - len(found)
            call: Any = {**request, "Limit": max(wanted, FILTERED_READ_LIMIT) if user and status else wanted}
            start: Any = {"ExclusiveStartKey": key} if key else {}
            response = self._client.query(**call, **start)
            found += response.get("Items", [])
            key = response.get("LastEvaluatedKey")
            if len(found) > limit:
                last = found[limit - 1]
                return [Run.from_item(i) for i in found[:limit]], {
                    n: last[n] for n in ("id", index.partition_key, index.sort_key)
                }
            if not key:
                break
        return [Run.from_item(i) for i in found], key

    def newest(self, *, status: str | None = None, limit: int | None = None) -> list[Run]:
        return self.page(limit or MAX_LISTED_RUNS, status=status)[0]

    def runs_with_sensor(self, sensor_id: str, after: list[str] | None) -> Any:
        """One Query: the runs that declared the sensor, newest first, after the run at `after`
        ([startedAt, id]); their positions and ids, and where to go on (None: no run left)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": RUNS_BY_START.name,
            "KeyConditionExpression": "#kind = :run",
            "FilterExpression": "contains(sensorIds, :sensor)",
            "ExpressionAttributeNames": {"#kind": KIND},
            "ExpressionAttributeValues": {":run": {"S": RUN_KIND}, ":sensor": {"S": sensor_id}},
            "ScanIndexForward": False,
            "Limit": FILTERED_READ_LIMIT,
            "ProjectionExpression": "#kind, startedAt, id",
        }
        if after is not None:
            start = {KIND: RUN_KIND, "startedAt": after[0], "id": after[1]}
            request["ExclusiveStartKey"] = {name: {"S": value} for name, value in start.items()}
        response = self._client.query(**request)
        found = [([i["startedAt"]["S"], i["id"]["S"]], i["id"]["S"]) for i in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return found, [last["startedAt"]["S"], last["id"]["S"]] if last else None  # type: ignore[index]

    def start(self, run: Run) -> Run:
        """Create the RUNNING run and take its slots, in one transaction. Finding the run's id
        already stored means an earlier attempt of this same call went through (its answer was
        lost and the SDK or the client sent it again): that run is the answer."""
        put = {
            "TableName": self._table,
            "Item": run.item(),
            "ConditionExpression": "attribute_not_exists(id)",
        }
        items = [self._slot(None, +1), self._slot(run.username, +1), {"Put": put}]
        codes = self._transact(items, before_retry=lambda: self._refuse_when_full(run.username))
        if codes is None:
            return run
        if codes[2] == "ConditionalCheckFailed" and (stored := self.get(run.id)) is not None:
            return stored
        if "ConditionalCheckFailed" in codes[:2]:
            self._refuse_when_full(run.username)
        raise Unavailable("could not start the run, try again")

    def end(self, run_id: str, status: str, message: str | None, token: str) -> Run:
        """Move a RUNNING run to `status` and give its slots back. The transaction leaves
        `token` on the run: if an earlier attempt of this same call went through, the token is
        ours and the ended run is the answer; if someone else ended it, RunNotRunning."""
        run = self._running_or_ended_by(run_id, token)
        if run.status != RUNNING:
            return run
        ended = msgspec.structs.replace(
            run, status=status, finished_ms=schemas.now_ms(), error_message=message
        )
        values: dict[str, Any] = {
            ":new": {"S": status},
            ":running": {"S": RUNNING},
            ":finished": {"S": schemas.format_ms(ended.finished_ms or 0)},
            ":token": {"S": token},
        }
        update = "SET #status = :new, finishedAt = :finished, endToken = :token"
        if message is not None:
            update, values[":error"] = update + ", errorMessage = :error", {"S": message}
        change = {
            "Update": {
                "TableName": self._table,
                "Key": {"id": {"S": run_id}},
                "UpdateExpression": update,
                "ConditionExpression": "#status = :running",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }
        codes = self._transact([change, self._slot(None, -1), self._slot(run.username, -1)])
        if codes is None:
            return ended
        if codes[0] == "ConditionalCheckFailed":
            return self._running_or_ended_by(run_id, token)
        raise Unavailable("could not end the run, try again")

    def _running_or_ended_by(self, run_id: str, token: str) -> Run:
        item = self._item(run_id, RUN_KIND)
        if item is None:
            raise NotFound(f"run {run_id} not found")
        run = Run.from_item(item)
        if run.status != RUNNING and item.get("endToken") != {"S": token}:
            raise RunNotRunning(f"run {run_id} is {run.status}, not RUNNING", status=run.status)
        return run

    def _slot(self, username: str | None, step: int) -> dict[str, Any]:
        """Take (step +1, within the limit) or give back (-1) a slot of all runs or of one user's."""
        limit = self.max_running if username is None else self.max_per_user
        # if_not_exists: a counter missing when a slot is given back bottoms out at 0.
        change = "+ :one" if step > 0 else "- :one"
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"id": {"S": slots_id(username)}},
            "UpdateExpression": f"SET running = if_not_exists(running, :start) {change}, #kind = :slots",
            "ExpressionAttributeNames": {"#kind": KIND},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":start": {"N": "0" if step > 0 else "1"},
                ":slots": {"S": SLOTS_KIND},
            },
        }
        if step > 0:
            update["ConditionExpression"] = "attribute_not_exists(running) OR running < :limit"
            update["ExpressionAttributeValues"][":limit"] = {"N": str(limit)}
        return {"Update": update}

    def _refuse_when_full(self, username: str) -> None:
        """Before retrying a start that conflicted: once the house (or the user's share) is full,
        the waiting starts end at once instead of contending for the slot items."""
        running = self.count_running()
        if running >= self.max_running:
            raise RunLimitReached(
                f"{running}/{self.max_running} runs are running: no slot available",
                currentRunning=running,
                maxAllowed=self.max_running,
            )
        if self.count_running(username) >= self.max_per_user:
            raise UserRunLimitReached(
                f"{username} already has {self.max_per_user} runs running, the most one user may have;"
                " finish one first",
                maxPerUser=self.max_per_user,
            )

    def _transact(self, items: list[dict[str, Any]], before_retry: Any = None) -> list[str] | None:
        """None on success, else the per-item cancellation codes. Conflicts with other
        transactions (as DynamoDB has them) are retried; Unavailable once attempts run out."""
        for attempt in attempts():
            if attempt and before_retry:
                before_retry()
            try:
                self._client.transact_write_items(TransactItems=items, ClientRequestToken=uuid.uuid4().hex)  # type: ignore[arg-type]
                return None
            except Unavailable:
                continue  # throttled beyond the SDK's retries: again, within these attempts
            except ClientError as error:
                if aws_code(error) != "TransactionCanceledException":
                    raise
                codes = [
                    str(reason.get("Code") or "None")
                    for reason in error.response.get("CancellationReasons", [])
                ]
                if "ConditionalCheckFailed" in codes:
                    return codes
        raise Unavailable("DynamoDB is busy with other changes to the same runs, retry shortly")


# ---- the service -----------------------------------------------------------------------


class _Known(msgspec.Struct):
    run: Run | None
    until: float


class RunService:
    """Starts and ends runs (finish, interrupt-all, time-outs) and keeps each run's status for
    `run_status_cache_seconds`, so that a reading costs no read of its run: a run ended here is
    forgotten at once, one ended elsewhere is noticed within that bound."""

    MAX_KNOWN = 10_000  # bounds memory if a client sprays run ids

    def __init__(self, repository: RunRepository, settings: Settings, monotonic: Any = time.monotonic):
        self.repository = repository
        self._settings = settings
        self._monotonic = monotonic
        self._known: dict[str, _Known] = {}

    def get(self, run_id: str) -> Run:
        run = self.repository.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def can_start(self) -> dict[str, Any]:
        limit = self.repository.max_running
        running = self.repository.count_running()
        if running >= limit and self.sweep()[1]:
            running = self.repository.count_running()  # a full house may hold abandoned runs
        available = max(0, limit - running)
        return {
            "canStart": available > 0,
            "currentRunning": running,
            "maxAllowed": limit,
            "available": available,
        }

    def start(self, username: str, params: schemas.RunParams, run_id: str | None = None) -> Run:
        sensor_ids = [str(s) for s in params.sensorIds]
        if len(set(sensor_ids)) != len(sensor_ids):
            raise ValidationFailed("sensorIds must not repeat")
        run = Run(
            id=run_id or str(uuid.uuid4()),
            username=username,
            status=RUNNING,
            started_ms=schemas.now_ms(),
            duration=params.duration,
            interval=params.interval,
            sensor_ids=tuple(sensor_ids),
        )
        run = self.repository.start(run)
        self._remember(run.id, run)
        self._log(
            "run started", run, sensors=len(run.sensor_ids), duration=run.duration, interval=run.interval
        )
        return run

    def finish(self, run_id: str, status: str, message: str | None, token: str | None = None) -> Run:
        """`status`: SUCCESS, COMPLETED (stored as SUCCESS) or FAILED, in any letter case."""
        # ASCII only: str.upper() maps some other letters to ASCII ones (U+017F long s to S).
        status = status.upper() if status.isascii() else status
        status = "SUCCESS" if status == "COMPLETED" else status
        if status not in ("SUCCESS", "FAILED"):
            raise ValidationFailed("status must be SUCCESS, COMPLETED or FAILED")
        run = self._end(run_id, status, message if status == "FAILED" else None, token, "run finished")
        return run

    def interrupt_all(self) -> int:
        interrupted = 0
        for run in self.repository.newest(status=RUNNING):
            try:
                self._end(run.id, "INTERRUPTED", "interrupted by interrupt-all", None, "run interrupted")
                interrupted += 1
            except RunNotRunning:
                continue  # ended meanwhile by someone else
        return interrupted

    def sweep(self) -> tuple[list[Run], list[Run]]:
        """The RUNNING runs, newest first, once the overdue ones are timed out: (running, timed out).
        Bounded by the run limit, not by history."""
        return self._time_out(self.repository.newest(status=RUNNING))

    def require_running(self, run_id: str) -> Run:
        """The run if it accepts readings; NotFound or RunNotRunning otherwise."""
        known = self._known.get(run_id)
        if known is None or known.until <= self._monotonic():
            known = self._remember(run_id, self.repository.get(run_id))
        run = known.run
        if run is None:
            raise NotFound(f"run {run_id} not found")
        if run.is_overdue(self._settings.run_grace_seconds, schemas.now_ms()):
            timed_out = self._time_out([run])[1]
            run = timed_out[0] if timed_out else self.repository.get(run_id) or run
            self._remember(run_id, run)
        if run.status != RUNNING:
            raise RunNotRunning(
                f"run {run_id} is {run.status}: it no longer accepts readings", status=run.status
            )
        return run

    def forget(self, run_id: str) -> None:
        self._known.pop(run_id, None)

    def view(self, run: Run, base_url: str = "") -> RunView:
        """The run as the API shows it; `base_url`: where the caller reached the API, for the link
        to the run viewer when there is no Grafana."""
        return RunView(
            id=run.id,
            runId=run.id,
            username=run.username,
            status=run.status,
            startedAt=schemas.format_ms(run.started_ms),
            finishedAt=schemas.format_ms(run.finished_ms) if run.finished_ms is not None else None,
            duration=run.duration,
            interval=run.interval,
            params=RunParamsView(run.id, list(run.sensor_ids), run.duration, run.interval),
            grafanaUrl=self._link(run, base_url),
            errorMessage=run.error_message,
        )

    def _link(self, run: Run, base_url: str) -> str:
        if not self._settings.grafana_url:
            return f"{base_url}/?{urlencode({'runId': run.id})}"
        query = {
            "orgId": 1,
            f"var-{STAGE_VARIABLE}": self._settings.stage,
            f"var-{RUN_VARIABLE}": run.id,
            f"var-{USER_VARIABLE}": run.username,
            "from": run.started_ms - 60_000,
            "to": run.started_ms + run.duration * 1000 + 300_000,
        }
        return f"{self._settings.grafana_url}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}?{urlencode(query)}"

    def _end(self, run_id: str, status: str, message: str | None, token: str | None, event: str) -> Run:
        run = self.repository.end(run_id, status, message, token or uuid.uuid4().hex)
        self.forget(run.id)
        self._log(event, run)
        return run

    def _time_out(self, runs: list[Run]) -> tuple[list[Run], list[Run]]:
        grace, now = self._settings.run_grace_seconds, schemas.now_ms()
        running: list[Run] = []
        timed_out: list[Run] = []
        for run in runs:
            if not run.is_overdue(grace, now):
                running.append(run)
                continue
            message = f"no finish within duration {run.duration}s + grace {grace}s"
            with contextlib.suppress(RunNotRunning):  # ended meanwhile: no longer running either way
                timed_out.append(self._end(run.id, "TIMEOUT", message, None, "run timed out"))
        return running, timed_out

    def _remember(self, run_id: str, run: Run | None) -> _Known:
        if len(self._known) >= self.MAX_KNOWN:
            self._known.clear()
        known = self._known[run_id] = _Known(run, self._monotonic() + self._settings.run_status_cache_seconds)
        return known

    @staticmethod
    def _log(event: str, run: Run, **extra: Any) -> None:
        logger.info(event, extra={"runId": run.id, "user": run.username, "status": run.status, **extra})
