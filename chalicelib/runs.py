"""Run repository: every state change is a DynamoDB transaction or conditional write.

Invariant: the slot item's ``running`` equals the number of RUNNING runs and never
exceeds the limit. Starting a run increments it in the same transaction that
creates the run, conditioned on the limit; every way out of RUNNING (finish,
interrupt, timeout) decrements it in the same transaction that changes the
status, conditioned on the run still being RUNNING, so the slot comes back
exactly once however many callers race.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib import clock, paging, retry
from chalicelib.errors import NotFound, RunLimitReached, RunNotRunning, Unavailable, UserRunLimitReached
from chalicelib.pagination import AttributeMap
from chalicelib.run_shape import RUN_ENTITY, RUNNING, Attr, Run, item_to_run, run_to_item
from chalicelib.tables import (
    RUN_SLOTS_ID,
    RUNS,
    RUNS_BY_START_INDEX,
    RUNS_BY_STATUS_INDEX,
    RUNS_BY_USER_INDEX,
    user_slots_id,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# The most runs one request lists: the RUNNING ones are at most the run limit, and a
# list of the whole history (`/api/runs/all`, the report) shows the newest ones.
MAX_LISTED_RUNS = 1000
# The attribute where the request that ended a run leaves its token (see `end`).
_END_TOKEN = "endToken"
_READING_SPAN = Attr.READING_SPAN


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[Run]
    last_key: AttributeMap | None


def _cancellation_codes(error: ClientError) -> list[str]:
    reasons = error.response.get("CancellationReasons") or []
    return [str(reason.get("Code") or "None") for reason in reasons]


class RunRepository:
    def __init__(
        self, client: DynamoDBClient, table_name: str, max_concurrent_runs: int, max_runs_per_user: int = 2
    ):
        self._client = client
        self._table = table_name
        self._max = max_concurrent_runs
        self._max_per_user = max_runs_per_user

    @property
    def max_concurrent_runs(self) -> int:
        return self._max

    # ---- reads ------------------------------------------------------------

    def count_running(self, username: str | None = None) -> int:
        """RUNNING runs in all, or of one user."""
        slots_id = RUN_SLOTS_ID if username is None else user_slots_id(username)
        response = self._client.get_item(
            TableName=self._table, Key={"id": {"S": slots_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return int(item["running"]["N"]) if item and "running" in item else 0

    def get(self, run_id: str, *, consistent: bool = True) -> Run | None:
        response = self._client.get_item(
            TableName=self._table, Key={"id": {"S": run_id}}, ConsistentRead=consistent
        )
        item = response.get("Item")
        if not item or "entity" not in item:
            return None
        return item_to_run(item)

    def page(
        self,
        *,
        limit: int,
        start_key: AttributeMap | None = None,
        status: str | None = None,
        user: str | None = None,
    ) -> RunPage:
        """Newest first. Each filter picks the index whose key it is; both filters
        query the user's runs and filter on status."""
        names = {"#pk": "entity"}
        values: dict[str, Any] = {":pk": {"S": RUN_ENTITY}}
        index = RUNS_BY_START_INDEX
        filter_expression = None
        if user is not None:
            index, names["#pk"], values[":pk"] = RUNS_BY_USER_INDEX, "username", {"S": user}
            if status is not None:
                names["#status"] = "status"
                values[":status"] = {"S": status}
                filter_expression = "#status = :status"
        elif status is not None:
            index, names["#pk"], values[":pk"] = RUNS_BY_STATUS_INDEX, "status", {"S": status}

        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if filter_expression:
            request["FilterExpression"] = filter_expression
        page = paging.query_page(
            self._client,
            request,
            limit=limit,
            start_key=start_key,
            key_attributes=RUNS.page_key_attributes(index),
            parse=item_to_run,
        )
        return RunPage(page.items, page.last_key)

    def runs_with_sensor(
        self, sensor_id: str, after: list[str] | None
    ) -> tuple[list[tuple[str, str, int | None]], list[str] | None]:
        """One Query: runs that declared `sensor_id`, newest first, after the position
        `after` ([startedAt, id] of a run). Returns [(startedAt, id, reading span or None)]
        and where to go on from (None: no run left)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": RUNS_BY_START_INDEX,
            "KeyConditionExpression": "#pk = :pk",
            "FilterExpression": "contains(#sensors, :sensor)",
            "ExpressionAttributeNames": {
                "#pk": "entity",
                "#sensors": "sensorIds",
                "#id": "id",
                "#at": "startedAt",
                "#span": _READING_SPAN,
            },
            "ExpressionAttributeValues": {":pk": {"S": RUN_ENTITY}, ":sensor": {"S": sensor_id}},
            "ScanIndexForward": False,
            "Limit": paging.FILTERED_READ_LIMIT,
            # The index's key attributes, so a LastEvaluatedKey can be built from the last item.
            "ProjectionExpression": "#pk, #at, #id, #span",
        }
        if after is not None:
            request["ExclusiveStartKey"] = {
                "entity": {"S": RUN_ENTITY},
                "startedAt": {"S": after[0]},
                "id": {"S": after[1]},
            }
        response = self._client.query(**request)
        found = [
            (
                item["startedAt"]["S"],
                item["id"]["S"],
                int(item[_READING_SPAN]["N"]) if _READING_SPAN in item else None,
            )
            for item in response.get("Items", [])
        ]
        last = response.get("LastEvaluatedKey")
        return found, [last["startedAt"]["S"], last["id"]["S"]] if last else None  # type: ignore[index]

    def newest(self, *, status: str | None = None, limit: int | None = None) -> list[Run]:
        """The newest `limit` (default MAX_LISTED_RUNS) runs with that status: one page, so bounded work."""
        return self.page(limit=limit or MAX_LISTED_RUNS, status=status).runs

    # ---- state changes ----------------------------------------------------

    def start(
        self,
        *,
        username: str,
        sensor_ids: list[str],
        duration: int,
        interval: int,
        run_id: str | None = None,
    ) -> Run:
        """Create a RUNNING run and take its slot, in one transaction.

        Safe to repeat: the run id is new for every call (or derived from the
        request's Idempotency-Key), so finding that id already stored means an
        earlier attempt of this same call went through (its answer was lost, and
        the SDK or the client sent it again): that run is the answer."""
        run = Run(
            id=run_id or str(uuid.uuid4()),
            username=username,
            status=RUNNING,
            started_ms=clock.now_ms(),
            duration=duration,
            interval=interval,
            sensor_ids=tuple(sensor_ids),
            reading_span_ms=0,
        )
        items: list[dict[str, Any]] = [
            self._take_slot(RUN_SLOTS_ID, self._max),
            self._take_slot(user_slots_id(username), self._max_per_user),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": run_to_item(run),
                    "ConditionExpression": "attribute_not_exists(id)",
                }
            },
        ]
        codes = self._transact(items, before_retry=lambda: self._refuse_when_full(username))
        if codes is None:
            return run
        if codes[2] == "ConditionalCheckFailed":
            stored = self.get(run.id)
            if stored is not None:
                return stored
        if "ConditionalCheckFailed" in codes[:2]:
            self._refuse_when_full(username)
        raise Unavailable("could not start the run, try again")

    def widen_reading_span(self, run_id: str, span_ms: int) -> None:
        """Record that the run now has a chunk spanning `span_ms`, before that chunk is
        written. Only ever widens; a run without a record keeps none (it may hold chunks
        of any span)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": run_id}},
                UpdateExpression="SET #span = :span",
                ConditionExpression="#span < :span",
                ExpressionAttributeNames={"#span": _READING_SPAN},
                ExpressionAttributeValues={":span": {"N": str(span_ms)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            # Already as wide (another request widened it), or not recorded for this run.

    def _take_slot(self, slots_id: str, limit: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"id": {"S": slots_id}},
                "UpdateExpression": "SET running = if_not_exists(running, :zero) + :one",
                "ConditionExpression": "attribute_not_exists(running) OR running < :limit",
                "ExpressionAttributeValues": {
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                },
            }
        }

    def _give_slot_back(self, slots_id: str) -> dict[str, Any]:
        # if_not_exists: a counter that predates this run (older data) bottoms out at 0.
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"id": {"S": slots_id}},
                "UpdateExpression": "SET running = if_not_exists(running, :one) - :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    def _refuse_when_full(self, username: str) -> None:
        """RunLimitReached if every slot is taken, UserRunLimitReached if every slot of the
        user is. Read before retrying a start that conflicted: once the house (or the
        user's share) is full, the starts waiting end at once instead of contending for
        the slot items until they run out of attempts."""
        running = self.count_running()
        if running >= self._max:
            raise RunLimitReached(
                f"{running}/{self._max} runs are running: no slot available",
                extra={"currentRunning": running, "maxAllowed": self._max},
            )
        if self.count_running(username) >= self._max_per_user:
            raise UserRunLimitReached(
                f"{username} already has {self._max_per_user} runs running, the most one user may have;"
                " finish one first",
                extra={"maxPerUser": self._max_per_user},
            )

    def end(
        self, run_id: str, status: str, error_message: str | None = None, *, token: str | None = None
    ) -> Run:
        """Move a RUNNING run to a terminal status and give its slots back (the global
        one and its user's).

        NotFound if there is no such run; RunNotRunning if it already ended
        (whoever ended it first gave the slots back). The transaction leaves this
        call's token on the run: if the condition fails because an earlier attempt
        of this same call went through (answer lost, request sent again), the token
        is ours and the ended run is the answer. `token` is derived from the
        request's Idempotency-Key when it has one, so a client re-send is recognised too."""
        token = token or uuid.uuid4().hex
        # Read first: the user's slot counter is keyed by the run's user.
        run = self._ended_or_running(run_id, token)
        if run.status != RUNNING:
            return run
        ended = replace(run, status=status, finished_ms=clock.now_ms(), error_message=error_message)
        values: dict[str, Any] = {
            ":new": {"S": status},
            ":running": {"S": RUNNING},
            ":finished": {"S": clock.format_ms(ended.finished_ms or 0)},
            ":token": {"S": token},
        }
        update = f"SET #status = :new, finishedAt = :finished, {_END_TOKEN} = :token"
        if error_message is not None:
            update += ", errorMessage = :error"
            values[":error"] = {"S": error_message}
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"id": {"S": run_id}},
                    "UpdateExpression": update,
                    "ConditionExpression": "attribute_exists(entity) AND #status = :running",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": values,
                }
            },
            self._give_slot_back(RUN_SLOTS_ID),
            self._give_slot_back(user_slots_id(run.username)),
        ]
        codes = self._transact(items)
        if codes is None:
            return ended
        if codes[0] == "ConditionalCheckFailed":
            return self._ended_or_running(run_id, token)
        raise Unavailable("could not end the run, try again")

    def _ended_or_running(self, run_id: str, token: str) -> Run:
        """The run if it is RUNNING or was ended with `token`; NotFound or RunNotRunning otherwise."""
        item = self._client.get_item(
            TableName=self._table, Key={"id": {"S": run_id}}, ConsistentRead=True
        ).get("Item")
        if not item or "entity" not in item:
            raise NotFound(f"run {run_id} not found")
        run = item_to_run(item)
        if run.status == RUNNING or item.get(_END_TOKEN) == {"S": token}:
            return run
        raise RunNotRunning(f"run {run_id} is {run.status}, not RUNNING", extra={"status": run.status})

    def end_overdue(self, runs: list[Run], grace_seconds: int) -> tuple[list[Run], list[Run]]:
        """Time out the overdue runs among `runs`; returns (still running, timed out)."""
        now = clock.now_ms()
        still_running: list[Run] = []
        timed_out: list[Run] = []
        for run in runs:
            if not run.is_overdue(grace_seconds, now):
                still_running.append(run)
                continue
            message = f"no finish within duration {run.duration}s + grace {grace_seconds}s"
            # Someone else may have ended it meanwhile; it is no longer running either way.
            with contextlib.suppress(RunNotRunning):
                timed_out.append(self.end(run.id, "TIMEOUT", message))
        return still_running, timed_out

    def sweep_running(self, grace_seconds: int) -> tuple[list[Run], list[Run]]:
        """All RUNNING runs, newest first, after timing out the overdue ones.

        Returns (still running, timed out). Bounded by the run limit, not by history."""
        return self.end_overdue(self.newest(status=RUNNING), grace_seconds)

    def _transact(
        self, items: list[dict[str, Any]], before_retry: Callable[[], None] | None = None
    ) -> list[str] | None:
        """Run a transaction; None on success, else the per-item cancellation codes.

        Concurrent transactions on the slot item conflict on DynamoDB; those are
        retried with backoff rather than reported (Unavailable once the attempts
        run out). Each attempt carries its own ClientRequestToken, so on DynamoDB
        an SDK retry of an attempt that went through succeeds without applying it
        twice; the callers do not rely on it (moto ignores it) and recognise their
        own earlier write instead."""
        for attempt in retry.attempts():
            if attempt and before_retry:
                before_retry()
            try:
                self._client.transact_write_items(
                    TransactItems=items,  # type: ignore[arg-type]
                    ClientRequestToken=uuid.uuid4().hex,
                )
                return None
            except ClientError as error:
                code = error.response["Error"]["Code"]
                if code == "TransactionConflictException":
                    continue
                if code != "TransactionCanceledException":
                    raise
                codes = _cancellation_codes(error)
                if "TransactionConflict" in codes and "ConditionalCheckFailed" not in codes:
                    continue
                if "ThrottlingError" in codes:
                    continue
                return codes
        raise Unavailable("DynamoDB is busy with other changes to the same runs, retry shortly")
