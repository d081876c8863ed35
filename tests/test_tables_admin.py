"""`make tables`: creates or updates a stage's tables, and a second run changes nothing."""

from __future__ import annotations

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from chalicelib.tables import ALL_TABLES, READINGS, RUNS
from iot_playground.cli import main
from iot_playground.common.stages import Stage
from iot_playground.deploy import tables_admin


def make_tables(*options: str) -> str:
    """`iot-playground tables --stage dev ...` as `make tables` runs it; returns what it printed."""
    result = CliRunner().invoke(main, ["tables", "--stage", "dev", *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def dynamodb():
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def dev():
    return Stage.load("dev").app_settings


def _describe(client, name):
    table = client.describe_table(TableName=name)["Table"]
    backups = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    return table, backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"], ttl


def test_cli_creates_both_stage_tables_then_reports_no_changes(dynamodb):
    first = make_tables()
    assert "iot-playground-runs-dev: create table (3 indexes, on-demand, KMS-encrypted)" in first
    assert "iot-playground-readings-dev: expire items by TTL on expiresAt" in first
    assert first.count("turn on point-in-time recovery") == 2

    second = make_tables()
    assert "no changes" in second
    assert "create" not in second and "turn on" not in second

    for definition in ALL_TABLES:
        name = f"iot-playground-{definition.logical_name}-dev"
        table, pitr, ttl = _describe(dynamodb, name)
        assert pitr == "ENABLED"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["SSEDescription"]["Status"] == "ENABLED"
        assert table["KeySchema"] == definition.key_schema()
        assert sorted(i["IndexName"] for i in table["GlobalSecondaryIndexes"]) == sorted(
            i.name for i in definition.indexes
        )
        if definition.ttl_attribute:
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": definition.ttl_attribute}


def test_second_provision_makes_no_change_at_all(dynamodb, dev):
    assert tables_admin.provision_tables(dynamodb, dev)
    calls = []
    dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert tables_admin.provision_tables(dynamodb, dev) == []
    assert calls and all(name.startswith("Describe") for name in calls), calls


def test_dry_run_changes_nothing(dynamodb, dev):
    planned = tables_admin.provision_tables(dynamodb, dev, apply=False)
    assert [str(c) for c in planned if c.creates_table] == [
        f"{RUNS.table_name(dev)}: create table (3 indexes, on-demand, KMS-encrypted)",
        f"{READINGS.table_name(dev)}: create table (no index, on-demand, KMS-encrypted)",
    ]
    assert dynamodb.list_tables()["TableNames"] == []


def test_existing_table_gets_missing_index_billing_ttl_and_recovery(dynamodb, dev):
    """A table from an older definition: provisioned, one index short, no TTL, no PITR."""
    name = RUNS.table_name(dev)
    request = RUNS.create_table_request(name)
    kept = request["GlobalSecondaryIndexes"][:1]
    used = {k["AttributeName"] for k in request["KeySchema"] + kept[0]["KeySchema"]}
    throughput = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    dynamodb.create_table(
        **{
            **request,
            "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": throughput,
            "AttributeDefinitions": [
                a for a in request["AttributeDefinitions"] if a["AttributeName"] in used
            ],
            "GlobalSecondaryIndexes": [{**kept[0], "ProvisionedThroughput": throughput}],
            "SSESpecification": tables_admin.SSE_SPECIFICATION,
        }
    )
    changes = [c.description for c in tables_admin.provision_tables(dynamodb, dev) if c.table == name]
    missing = [index["IndexName"] for index in request["GlobalSecondaryIndexes"][1:]]
    assert changes == [
        "switch to on-demand billing",
        *(f"add index {index}" for index in missing),
        "expire items by TTL on expiresAt",
        "turn on point-in-time recovery",
    ]
    table, pitr, ttl = _describe(dynamodb, name)
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {i.name for i in RUNS.indexes}
    assert pitr == "ENABLED" and ttl["TimeToLiveStatus"] == "ENABLED"
    assert tables_admin.provision_tables(dynamodb, dev) == []


def test_readings_table_of_the_old_layout_moves_to_chunks_then_loses_its_two_indexes(dynamodb, dev):
    """Readings used to be one item each, indexed by run and by sensor (projection ALL):
    every write billed three times. `make tables` rewrites them as chunks, then drops
    both indexes, once."""
    from chalicelib.tables import RETIRED_READINGS_INDEXES
    from tests.test_readings_layout import _old_item

    name = READINGS.table_name(dev)
    tables_admin.provision_tables(dynamodb, dev)
    dynamodb.delete_table(TableName=name)
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": attribute, "AttributeType": "S"}
            for attribute in ("pk", "sk", "runId", "sensorId")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": attribute, "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, attribute in zip(RETIRED_READINGS_INDEXES, ("runId", "sensorId"), strict=True)
        ],
        SSESpecification=tables_admin.SSE_SPECIFICATION,
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
    )
    dynamodb.update_continuous_backups(
        TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    old = [_old_item("run-1", "s1", "temperature", float(n), 1_800_000_000_000 + n, "u") for n in range(3)]
    for item in old:
        dynamodb.put_item(TableName=name, Item=item)
    planned = tables_admin.provision_tables(dynamodb, dev, apply=False)
    assert [str(c) for c in planned] == [
        f"{name}: rewrite readings of the old layout as chunks",
        *(f"{name}: drop index {index}" for index in sorted(RETIRED_READINGS_INDEXES)),
    ]
    assert dynamodb.scan(TableName=name)["Count"] == 3  # planning moved nothing
    assert [str(c) for c in tables_admin.provision_tables(dynamodb, dev)] == [str(c) for c in planned]
    table, _, _ = _describe(dynamodb, name)
    assert not table.get("GlobalSecondaryIndexes")
    (chunk,) = dynamodb.scan(TableName=name)["Items"]  # the three readings, as one chunk of run-1
    assert chunk["pk"] == {"S": "run-1"} and chunk["n"] == {"N": "3"}
    assert tables_admin.provision_tables(dynamodb, dev) == []


def test_unencrypted_table_is_planned_for_kms_encryption(dynamodb, dev):
    tables_admin.ensure_tables(dynamodb, dev)  # what `make run` creates: no KMS, no PITR
    planned = {str(c) for c in tables_admin.provision_tables(dynamodb, dev, apply=False)}
    for definition in ALL_TABLES:
        assert f"{definition.table_name(dev)}: encrypt at rest with the AWS-managed KMS key" in planned
        assert f"{definition.table_name(dev)}: turn on point-in-time recovery" in planned


def test_ensure_tables_reports_only_what_it_created(dynamodb, dev):
    assert tables_admin.ensure_tables(dynamodb, dev) == [d.table_name(dev) for d in ALL_TABLES]
    assert tables_admin.ensure_tables(dynamodb, dev) == []


def test_delete_removes_only_the_stage_tables(dynamodb, dev):
    tables_admin.ensure_tables(dynamodb, dev)
    dynamodb.create_table(**RUNS.create_table_request("iot-playground-runs-prod"))
    assert "deleted iot-playground-runs-dev, iot-playground-readings-dev" in make_tables("--delete")
    assert dynamodb.list_tables()["TableNames"] == ["iot-playground-runs-prod"]
    assert "no changes" in make_tables("--delete")


def test_make_tables_provisions_the_reports_bucket_then_reports_no_changes(dynamodb):
    s3 = boto3.client("s3", region_name="us-east-1")
    first = make_tables()
    for change in (
        "create bucket",
        "expire objects after 1 day(s)",
        "block public access",
        "encrypt at rest (SSE-S3)",
        "refuse plain HTTP (bucket policy)",
    ):
        assert f"iot-playground-reports-dev: {change}" in first
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket="iot-playground-reports-dev")["Rules"]
    assert (rule["Status"], rule["Expiration"]) == ("Enabled", {"Days": 1})
    block = s3.get_public_access_block(Bucket="iot-playground-reports-dev")["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert "no changes" in make_tables()
    make_tables("--delete")
    assert "iot-playground-reports-dev" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_the_local_stack_bucket_expires_downloads_without_the_deployed_safeguards(dynamodb, dev):
    s3 = boto3.client("s3", region_name="us-east-1")
    made = [str(c) for c in tables_admin.reconcile_bucket(s3, dev, durable=False)]
    bucket = dev.reports_bucket
    assert made == [
        f"{bucket}: create bucket",
        f"{bucket}: expire objects after 1 day(s)",
        f"{bucket}: let browsers GET presigned URLs (CORS)",
    ]
    assert tables_admin.reconcile_bucket(s3, dev, durable=False) == []
