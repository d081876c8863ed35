"""`make tables`: creates what is missing of a stage's tables, reports bucket, device-message queues
(before `chalice deploy`, whose SQS event source needs its queue) and their topic rule's role, from
the description; a second run changes nothing."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from iot_playground.cli import main
from iot_playground.common.stages import Stage
from iot_playground.deploy import guards, resources
from tests.deploy_support import on_demand_throughput  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow  # whole-account runs of a deploy tool over moto: seconds each


def make_tables(*options: str) -> str:
    """`iot-playground tables --stage dev ...` as `make tables` runs it; returns what it printed."""
    result = CliRunner().invoke(main, ["tables", "--stage", "dev", *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def dynamodb(on_demand_throughput: Any) -> Any:  # noqa: F811
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def described() -> dict[str, Any]:
    return resources.describe(Stage.load("dev"))


def test_make_tables_creates_every_table_and_the_bucket_complete_then_changes_nothing(dynamodb, described):
    first = make_tables()
    for table in described["tables"]:
        assert f"{table['name']}: create table" in first
        found = dynamodb.describe_table(TableName=table["name"])["Table"]
        assert (
            found["OnDemandThroughput"] == table["throughput"]
            and found["SSEDescription"]["Status"] == "ENABLED"
        )
        assert sorted(i["IndexName"] for i in found.get("GlobalSecondaryIndexes", [])) == [
            i["name"] for i in table["indexes"]
        ]
        backups = dynamodb.describe_continuous_backups(TableName=table["name"])[
            "ContinuousBackupsDescription"
        ]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        ttl = dynamodb.describe_time_to_live(TableName=table["name"])["TimeToLiveDescription"]
        assert ttl.get("AttributeName") == table["ttl"]
    assert "iot-playground-idempotency-dev" in {t["name"] for t in described["tables"]}
    s3 = boto3.client("s3", region_name="us-east-1")
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket="iot-playground-reports-dev")["Rules"]
    assert rule["Expiration"] == {"Days": 1}
    assert all(
        s3.get_public_access_block(Bucket="iot-playground-reports-dev")[
            "PublicAccessBlockConfiguration"
        ].values()
    )
    sqs = boto3.client("sqs", region_name="us-east-1")
    for queue in described["device_messages"]["queues"].values():  # the dead-letter one first
        assert f"{queue['QueueName']}: create" in first
        url = sqs.get_queue_url(QueueName=queue["QueueName"])["QueueUrl"]
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert found["SqsManagedSseEnabled"] == "true"
    assert json.loads(found["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:iot-playground-dev-device-messages-dlq",
        "maxReceiveCount": 5,
    }
    assert found["VisibilityTimeout"] == str(queue["VisibilityTimeout"])
    # The topic rule's role too, long before `make guards` makes the rule (IAM's changes reach IoT late).
    role = described["device_messages"]["role"]["name"]
    assert f"role {role}: create" in first and boto3.client("iam").get_role(RoleName=role)["Role"]
    assert "no changes" in make_tables()


def test_dry_run_changes_nothing(dynamodb):
    assert "would iot-playground-runs-dev: create table" in make_tables("--dry-run")
    assert dynamodb.list_tables()["TableNames"] == []


def test_an_existing_table_without_caps_gets_them(dynamodb, described):
    """Tables made before the caps (or by `make run`) get the on-demand maximum throughput, once."""
    readings = next(t for t in described["tables"] if t["key"] == "readings")
    dynamodb.create_table(
        **resources.create_table_request({k: v for k, v in readings.items() if k != "throughput"})
    )
    units = readings["throughput"]
    assert guards.converge(guards.table_steps(dynamodb, readings, True), report=None) == [
        f"iot-playground-readings-dev: cap on-demand throughput at {units['MaxReadRequestUnits']} RRU/s, "
        f"{units['MaxWriteRequestUnits']} WRU/s (and each index)"
    ]
    assert dynamodb.describe_table(TableName=readings["name"])["Table"]["OnDemandThroughput"] == units
    assert guards.converge(guards.table_steps(dynamodb, readings, True), report=None) == []


def test_the_local_stack_gets_the_tables_and_bucket_without_the_deployed_safeguards(dynamodb):
    settings = Stage.load("local").app_settings
    names = [t["name"] for t in resources.tables("local", Stage.load("local").environment)]
    assert guards.ensure_tables(dynamodb, settings) == names
    assert guards.ensure_tables(dynamodb, settings) == []
    s3 = boto3.client("s3", region_name="us-east-1")
    assert guards.reconcile_bucket(s3, settings) == [f"{settings.reports_bucket}: create bucket"]
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=settings.reports_bucket)["Rules"]
    assert (
        rule["Expiration"] == {"Days": 1} and s3.get_bucket_cors(Bucket=settings.reports_bucket)["CORSRules"]
    )
    with pytest.raises(s3.exceptions.ClientError):  # no TLS-only policy on a plain-HTTP endpoint
        s3.get_bucket_policy(Bucket=settings.reports_bucket)
    assert guards.reconcile_bucket(s3, settings) == []


def test_delete_removes_only_the_stages_tables_and_bucket(dynamodb):
    make_tables()
    dynamodb.create_table(
        **resources.create_table_request({**resources.tables("prod", {})[0], "indexes": []})
    )
    assert "deleted iot-playground-runs-dev, iot-playground-readings-dev" in make_tables("--delete")
    assert dynamodb.list_tables()["TableNames"] == ["iot-playground-runs-prod"]
    assert "no changes" in make_tables("--delete")
