"""Create or update the app's tables from `chalicelib.tables`, idempotently.

`ensure_tables` gives what the app needs to run (tables, indexes, TTL): the
local stack and the tests use it. `provision_tables` adds what a deployed stage
needs on top (on-demand billing, point-in-time recovery, KMS encryption at
rest); `make tables STAGE=dev` runs it against the account in the environment:

    python -m iot_playground.tables_admin --stage dev [--dry-run]
    python -m iot_playground.tables_admin --stage dev --delete   # the data goes too

Each step looks first and changes only what differs, so a second run makes no
call that changes anything, and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.settings import Settings
from chalicelib.tables import ALL_TABLES, RETIRED_READINGS_INDEXES, TableDefinition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ON_DEMAND: Final = "PAY_PER_REQUEST"
# Encryption with the account's AWS-managed key (alias/aws/dynamodb): auditable
# in CloudTrail, with no key to pay for or to lose. The templates ask for the same.
SSE_SPECIFICATION = {"Enabled": True, "SSEType": "KMS"}
_WAIT_DELAY_SECONDS = 2.0
_WAIT_TIMEOUT_SECONDS = 1800.0  # a new index on a large table backfills for a while


@dataclass(frozen=True, slots=True)
class Change:
    table: str
    description: str
    apply: Callable[[], object]
    creates_table: bool = False

    def __str__(self) -> str:
        return f"{self.table}: {self.description}"


def _exists(client: DynamoDBClient, table_name: str) -> bool:
    try:
        client.describe_table(TableName=table_name)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


def wait_until_active(client: DynamoDBClient, table_name: str, delay: float = _WAIT_DELAY_SECONDS) -> None:
    """Until the table and all its indexes are ACTIVE: DynamoDB refuses most
    updates to a table that is still changing."""
    deadline = time.monotonic() + _WAIT_TIMEOUT_SECONDS
    while True:
        table = client.describe_table(TableName=table_name)["Table"]
        statuses = [table.get("TableStatus")] + [
            i.get("IndexStatus") for i in table.get("GlobalSecondaryIndexes", [])
        ]
        if all(status == "ACTIVE" for status in statuses):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{table_name} is not ACTIVE after {_WAIT_TIMEOUT_SECONDS:.0f}s: {statuses}")
        time.sleep(delay)


def plan_table(
    client: DynamoDBClient, definition: TableDefinition, table_name: str, *, durable: bool
) -> list[Change]:
    """The changes that make `table_name` match `definition`. Looks, changes nothing.

    A missing table is one change (created complete); for an existing one each
    difference is its own change, applied in order."""
    wanted = definition.create_table_request(table_name)
    if not _exists(client, table_name):
        request = {**wanted, "SSESpecification": SSE_SPECIFICATION} if durable else wanted

        def create() -> None:
            client.create_table(**request)
            client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})

        features = [
            f"{len(definition.indexes)} indexes" if definition.indexes else "no index",
            "on-demand",
        ] + (["KMS-encrypted"] if durable else [])
        return [
            Change(table_name, f"create table ({', '.join(features)})", create, creates_table=True),
            *_ttl_and_backups(client, definition, table_name, durable),
        ]

    table = client.describe_table(TableName=table_name)["Table"]
    changes: list[Change] = []
    if durable and table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED") != ON_DEMAND:
        changes.append(
            Change(
                table_name,
                "switch to on-demand billing",
                lambda: client.update_table(TableName=table_name, BillingMode=ON_DEMAND),
            )
        )
    present = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
    wanted_names = {index["IndexName"] for index in wanted.get("GlobalSecondaryIndexes", [])}
    if present & set(RETIRED_READINGS_INDEXES):
        # Readings of the old layout move first: while its indexes exist, this step is not
        # done (it resumes where an interrupted run stopped), and queries never see both.
        changes.append(
            Change(
                table_name,
                "rewrite readings of the old layout as chunks",
                lambda: _move_readings(client, table_name),
            )
        )
    for name in sorted(present - wanted_names):
        # An index the definition no longer has (the readings table's two, since readings
        # are chunks keyed by run): it only bills every write again.
        changes.append(_drop_index(client, table_name, name))
    for index in wanted.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] not in present:
            changes.append(_create_index(client, table_name, wanted["AttributeDefinitions"], index))
    if durable and table.get("SSEDescription", {}).get("Status") not in ("ENABLED", "ENABLING", "UPDATING"):
        changes.append(
            Change(
                table_name,
                "encrypt at rest with the AWS-managed KMS key",
                lambda: client.update_table(TableName=table_name, SSESpecification=SSE_SPECIFICATION),  # type: ignore[arg-type]
            )
        )
    return changes + _ttl_and_backups(client, definition, table_name, durable, exists=True)


def _move_readings(client: DynamoDBClient, table_name: str) -> None:
    from iot_playground.readings_layout import migrate_layout

    summary = migrate_layout(client, table_name)
    print(f"{table_name}: {summary.readings} readings rewritten as {summary.chunks} chunks", flush=True)


def _create_index(
    client: DynamoDBClient, table_name: str, attributes: list[dict[str, str]], index: dict[str, Any]
) -> Change:
    def create() -> None:
        # One index per UpdateTable call, and the next only once this one is ACTIVE.
        wait_until_active(client, table_name)
        client.update_table(
            TableName=table_name,
            AttributeDefinitions=attributes,  # type: ignore[arg-type]
            GlobalSecondaryIndexUpdates=[{"Create": index}],  # type: ignore[typeddict-item]
        )
        wait_until_active(client, table_name)

    return Change(table_name, f"add index {index['IndexName']}", create)


def _drop_index(client: DynamoDBClient, table_name: str, index_name: str) -> Change:
    def drop() -> None:
        wait_until_active(client, table_name)
        client.update_table(
            TableName=table_name,
            GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": index_name}}],
        )
        _wait_until_gone(client, table_name, index_name)

    return Change(table_name, f"drop index {index_name}", drop)


def _wait_until_gone(
    client: DynamoDBClient, table_name: str, index_name: str, delay: float = _WAIT_DELAY_SECONDS
) -> None:
    deadline = time.monotonic() + _WAIT_TIMEOUT_SECONDS
    while True:
        table = client.describe_table(TableName=table_name)["Table"]
        names = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        if index_name not in names and table.get("TableStatus") == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{table_name}: index {index_name} still there after {_WAIT_TIMEOUT_SECONDS:.0f}s"
            )
        time.sleep(delay)


def _ttl_and_backups(
    client: DynamoDBClient,
    definition: TableDefinition,
    table_name: str,
    durable: bool,
    *,
    exists: bool = False,
) -> list[Change]:
    changes: list[Change] = []
    ttl_attribute = definition.ttl_attribute
    if ttl_attribute:
        status = (
            client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"].get(
                "TimeToLiveStatus"
            )
            if exists
            else None
        )
        if status not in ("ENABLED", "ENABLING"):
            changes.append(
                Change(
                    table_name,
                    f"expire items by TTL on {ttl_attribute}",
                    lambda: client.update_time_to_live(
                        TableName=table_name,
                        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
                    ),
                )
            )
    if durable:
        status = (
            client.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
            .get("PointInTimeRecoveryDescription", {})
            .get("PointInTimeRecoveryStatus")
            if exists
            else None
        )
        if status != "ENABLED":
            changes.append(
                Change(table_name, "turn on point-in-time recovery", lambda: _enable_pitr(client, table_name))
            )
    return changes


def _enable_pitr(client: DynamoDBClient, table_name: str) -> None:
    # Right after CreateTable, continuous backups can still be switching on.
    for attempt in range(10):
        try:
            client.update_continuous_backups(
                TableName=table_name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            return
        except client.exceptions.ContinuousBackupsUnavailableException:
            if attempt == 9:
                raise
            time.sleep(_WAIT_DELAY_SECONDS * (attempt + 1))


def reconcile(
    client: DynamoDBClient, settings: Settings, *, durable: bool, apply: bool = True
) -> list[Change]:
    """Plan (and unless `apply` is False, make) the changes for every table."""
    made: list[Change] = []
    for definition in ALL_TABLES:
        for change in plan_table(client, definition, definition.table_name(settings), durable=durable):
            if apply:
                change.apply()
            made.append(change)
    return made


def ensure_tables(client: DynamoDBClient, settings: Settings) -> list[str]:
    """Make every table usable by the app; returns the names of those created now."""
    return [c.table for c in reconcile(client, settings, durable=False) if c.creates_table]


def provision_tables(client: DynamoDBClient, settings: Settings, *, apply: bool = True) -> list[Change]:
    """Make every table match its definition plus the deployed-stage safeguards."""
    return reconcile(client, settings, durable=True, apply=apply)


def delete_tables(client: DynamoDBClient, settings: Settings) -> list[str]:
    """Delete the stage's tables and all their data (destroy.yml, when asked); returns those deleted."""
    deleted = []
    for definition in ALL_TABLES:
        name = definition.table_name(settings)
        if _exists(client, name):
            client.delete_table(TableName=name)
            client.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 2})
            deleted.append(name)
    return deleted


def main(argv: list[str] | None = None) -> int:
    from iot_playground.stages import DEPLOY_STAGES, Stage

    parser = argparse.ArgumentParser(description="Create or update a stage's DynamoDB tables.")
    parser.add_argument("--stage", required=True, choices=DEPLOY_STAGES)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--dry-run", action="store_true", help="only say what would change")
    action.add_argument("--delete", action="store_true", help="delete the stage's tables and their data")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("DYNAMODB_ENDPOINT") or None,
        help="another DynamoDB endpoint (default: the account's regional one; DYNAMODB_ENDPOINT)",
    )
    args = parser.parse_args(argv)

    import boto3

    settings = Stage.load(args.stage).app_settings
    client: DynamoDBClient = boto3.session.Session().client("dynamodb", endpoint_url=args.endpoint_url)
    names = ", ".join(definition.table_name(settings) for definition in ALL_TABLES)
    print(f"stage {args.stage}: tables {names} in {client.meta.region_name}", flush=True)
    if args.delete:
        deleted = delete_tables(client, settings)
        print(f"deleted {', '.join(deleted)}" if deleted else "no changes: no table to delete")
        return 0
    changes = provision_tables(client, settings, apply=not args.dry_run)
    for change in changes:
        print(f"{'would ' if args.dry_run else ''}{change}", flush=True)
    if not changes:
        print("no changes: the tables already match chalicelib/tables.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
