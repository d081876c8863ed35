"""`iot-playground device create|delete` on moto's AWS IoT: what a device is made of,
and that delete leaves nothing of it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from iot_playground.cli import main

RUN = "0b2c6e2e-3f1a-4c3e-9a51-3f7d0c2b1a11"
THING = f"iot-playground-dev-{RUN}-sensor_1"  # the sensor id's `.` becomes `_`
TOPIC = f"iot-playground/dev/runs/{RUN}/sensors/sensor.1"


@pytest.fixture
def iot() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("iot")


def _device(*args: str) -> Any:
    return CliRunner().invoke(main, ["device", *args, "--run", RUN, "--sensor", "sensor.1"])


def test_create_makes_a_thing_an_active_certificate_and_a_policy_for_its_topic_only(iot, tmp_path):
    result = _device("create", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = dict(re.findall(r"^([a-z ]+): +(.+)$", result.output, flags=re.M))
    # The account's data endpoint (moto makes up a new one on each call; AWS keeps one).
    assert re.fullmatch(r"[a-z0-9]+-ats\.iot\.us-east-1\.amazonaws\.com:8883", lines["endpoint"])
    assert (lines["client id"], lines["topic"]) == (THING, TOPIC)

    assert iot.describe_thing(thingName=THING)["thingName"] == THING
    [certificate_arn] = iot.list_thing_principals(thingName=THING)["principals"]
    certificate = iot.describe_certificate(certificateId=certificate_arn.rsplit("/", 1)[1])
    assert certificate["certificateDescription"]["status"] == "ACTIVE"
    attached = iot.list_attached_policies(target=certificate_arn)["policies"]
    assert [p["policyName"] for p in attached] == [THING]
    account = certificate_arn.split(":")[4]
    assert json.loads(iot.get_policy(policyName=THING)["policyDocument"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"arn:aws:iot:us-east-1:{account}:client/{THING}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"arn:aws:iot:us-east-1:{account}:topic/{TOPIC}",
            },
        ],
    }

    cert_file, key_file = tmp_path / f"{THING}.cert.pem", tmp_path / f"{THING}.private.key"
    assert (lines["certificate"], lines["private key"]) == (str(cert_file), str(key_file))
    assert cert_file.read_text() == certificate["certificateDescription"]["certificatePem"]
    assert "PRIVATE KEY-----" in key_file.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_create_twice_fails_and_makes_no_second_certificate(iot, tmp_path):
    assert _device("create", "--out", str(tmp_path)).exit_code == 0
    again = _device("create", "--out", str(tmp_path / "again"))
    assert again.exit_code == 1 and "ResourceAlreadyExists" in again.output
    assert len(iot.list_certificates()["certificates"]) == 1
    assert not (tmp_path / "again").exists()


def test_delete_removes_the_thing_its_certificate_and_the_policy(iot, tmp_path):
    assert _device("create", "--out", str(tmp_path)).exit_code == 0
    other = CliRunner().invoke(
        main, ["device", "create", "--run", RUN, "--sensor", "sensor-2", "--out", str(tmp_path)]
    )
    assert other.exit_code == 0, other.output

    result = _device("delete")
    assert result.exit_code == 0, result.output
    assert re.findall(r"^deleted (\w+)", result.output, flags=re.M) == ["certificate", "thing", "policy"]
    # Only the other sensor's device is left.
    left = f"iot-playground-dev-{RUN}-sensor-2"
    assert [t["thingName"] for t in iot.list_things()["things"]] == [left]
    assert [p["policyName"] for p in iot.list_policies()["policies"]] == [left]
    assert len(iot.list_certificates()["certificates"]) == 1

    again = _device("delete")
    assert again.exit_code == 0 and again.output.strip() == "nothing to delete"


def test_delete_cleans_up_what_a_failed_create_left(iot):
    """A policy and a certificate it is attached to, but no thing: delete still finds them."""
    iot.create_policy(policyName=THING, policyDocument="{}")
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName=THING, target=certificate["certificateArn"])
    result = _device("delete")
    assert result.exit_code == 0, result.output
    assert iot.list_policies()["policies"] == [] and iot.list_certificates()["certificates"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--run", "not-a-uuid", "--sensor", "s1"], "a UUID"), (["--run", RUN, "--sensor", "a b"], "1-64")],
)
def test_ids_the_api_would_refuse_are_refused(args, message):
    result = CliRunner().invoke(main, ["device", "create", *args])
    assert result.exit_code == 2 and message in result.output
