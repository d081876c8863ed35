"""Create or update the app's tables from `chalicelib.tables`, and its reports bucket from
`iot_playground/deploy/reports_bucket.py`, idempotently.

`ensure_tables` gives what the app needs to run (tables, indexes, TTL): the
local stack and the tests use it. `provision_tables` adds what a deployed stage
needs on top (on-demand billing, point-in-time recovery, KMS encryption at
rest); `reconcile_bucket` does the same for the reports bucket (lifecycle and CORS
locally; public access block, ownership, SSE-S3 and a TLS-only policy for a deployed
stage). `make tables STAGE=dev` runs both against the account in the environment:

    iot-playground tables --stage dev [--dry-run]
    iot-playground tables --stage dev --delete   # the data goes too

Each step looks first and changes only what differs, so a second run makes no
call that changes anything, and says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.settings import Settings
from chalicelib.tables import ALL_TABLES, RETIRED_READINGS_INDEXES, TableDefinition
from iot_playground.deploy import reports_bucket

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
    from iot_playground.migration.readings_layout import migrate_layout

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


# ---- the reports bucket ----------------------------------------------------------


def _s3_get(
    call: Callable[..., dict[str, Any]], bucket: str, missing: tuple[str, ...]
) -> dict[str, Any] | None:
    """A bucket setting, or None when the bucket has none (S3 answers these with an error)."""
    from botocore.exceptions import ClientError

    try:
        return call(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in missing:
            return None
        raise


def _bucket_exists(s3: Any, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def plan_bucket(s3: Any, bucket: str, *, durable: bool) -> list[Change]:
    """The changes that make `bucket` the reports bucket of iot_playground/deploy/reports_bucket.py.
    Looks, changes nothing. `durable` (a deployed stage) adds the public access block,
    ownership, encryption and TLS-only policy; the local stack's plain-HTTP endpoint needs
    only the lifecycle rule and CORS."""
    changes: list[Change] = []
    exists = _bucket_exists(s3, bucket)
    if not exists:
        region = s3.meta.region_name
        location = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        changes.append(
            Change(
                bucket,
                "create bucket",
                lambda: s3.create_bucket(Bucket=bucket, **location),
                creates_table=True,
            )
        )

    def current(call: Callable[..., dict[str, Any]], *missing: str) -> dict[str, Any] | None:
        return _s3_get(call, bucket, missing) if exists else None

    lifecycle = current(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration")
    rules = {rule.get("ID"): rule for rule in (lifecycle or {}).get("Rules", [])}
    for wanted in reports_bucket.LIFECYCLE_RULES:
        have = rules.get(wanted["ID"], {})
        if have.get("Status") != wanted["Status"] or have.get("Expiration") != wanted["Expiration"]:
            changes.append(
                Change(
                    bucket,
                    f"expire objects after {reports_bucket.EXPIRE_DAYS} day(s)",
                    lambda: s3.put_bucket_lifecycle_configuration(
                        Bucket=bucket, LifecycleConfiguration={"Rules": reports_bucket.LIFECYCLE_RULES}
                    ),
                )
            )
            break
    cors = current(s3.get_bucket_cors, "NoSuchCORSConfiguration")
    if (cors or {}).get("CORSRules") != reports_bucket.CORS_RULES:
        changes.append(
            Change(
                bucket,
                "let browsers GET presigned URLs (CORS)",
                lambda: s3.put_bucket_cors(
                    Bucket=bucket, CORSConfiguration={"CORSRules": reports_bucket.CORS_RULES}
                ),
            )
        )
    if durable:
        changes += _durable_bucket(s3, bucket, current)
    return changes


def _durable_bucket(s3: Any, bucket: str, current: Callable[..., dict[str, Any] | None]) -> list[Change]:
    changes: list[Change] = []
    block = current(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration")
    if (block or {}).get("PublicAccessBlockConfiguration") != reports_bucket.PUBLIC_ACCESS_BLOCK:
        changes.append(
            Change(
                bucket,
                "block public access",
                lambda: s3.put_public_access_block(
                    Bucket=bucket, PublicAccessBlockConfiguration=reports_bucket.PUBLIC_ACCESS_BLOCK
                ),
            )
        )
    ownership = current(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError")
    owned = [
        r.get("ObjectOwnership") for r in (ownership or {}).get("OwnershipControls", {}).get("Rules", [])
    ]
    if owned != [reports_bucket.OBJECT_OWNERSHIP]:
        changes.append(
            Change(
                bucket,
                "own every object, no ACLs",
                lambda: s3.put_bucket_ownership_controls(
                    Bucket=bucket,
                    OwnershipControls={"Rules": [{"ObjectOwnership": reports_bucket.OBJECT_OWNERSHIP}]},
                ),
            )
        )
    encryption = current(s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError")
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        for r in (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    ]
    if algorithms != [reports_bucket.SSE_ALGORITHM]:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": reports_bucket.SSE_ALGORITHM}}
        changes.append(
            Change(
                bucket,
                "encrypt at rest (SSE-S3)",
                lambda: s3.put_bucket_encryption(
                    Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}
                ),
            )
        )
    arn = reports_bucket.bucket_arn(bucket)
    wanted = reports_bucket.tls_only_policy(arn, f"{arn}/*")
    policy = current(s3.get_bucket_policy, "NoSuchBucketPolicy")
    if policy is None or json.loads(policy["Policy"]) != wanted:
        changes.append(
            Change(
                bucket,
                "refuse plain HTTP (bucket policy)",
                lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(wanted)),
            )
        )
    return changes


def reconcile_bucket(s3: Any, settings: Settings, *, durable: bool, apply: bool = True) -> list[Change]:
    made = []
    for change in plan_bucket(s3, settings.reports_bucket, durable=durable):
        if apply:
            change.apply()
        made.append(change)
    return made


def delete_bucket(s3: Any, bucket: str) -> bool:
    """Empty and delete the reports bucket (downloads of the last day only); False if absent."""
    if not _bucket_exists(s3, bucket):
        return False
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
    return True


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


def apply_stage(
    stage: str,
    *,
    dry_run: bool = False,
    delete: bool = False,
    endpoint_url: str | None = None,
    s3_endpoint_url: str | None = None,
) -> int:
    """`iot-playground tables`: create or update (or delete) a stage's tables and bucket;
    prints what changed."""
    import boto3

    from iot_playground.common.stages import Stage

    settings = Stage.load(stage).app_settings
    session = boto3.session.Session()
    client: DynamoDBClient = session.client("dynamodb", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=s3_endpoint_url)
    names = ", ".join(definition.table_name(settings) for definition in ALL_TABLES)
    print(
        f"stage {stage}: tables {names}, bucket {settings.reports_bucket} in {client.meta.region_name}",
        flush=True,
    )
    if delete:
        deleted = delete_tables(client, settings)
        if delete_bucket(s3, settings.reports_bucket):
            deleted.append(settings.reports_bucket)
        print(f"deleted {', '.join(deleted)}" if deleted else "no changes: nothing to delete")
        return 0
    changes = provision_tables(client, settings, apply=not dry_run)
    changes += reconcile_bucket(s3, settings, durable=True, apply=not dry_run)
    for change in changes:
        print(f"{'would ' if dry_run else ''}{change}", flush=True)
    if not changes:
        print("no changes: the tables and the reports bucket already match their definitions")
    return 0
