"""`iot-playground device create|delete`: a sensor of a run as an AWS IoT thing."""

from __future__ import annotations

import json
import re
from contextlib import suppress
from pathlib import Path

from iot_playground.common.mqtt_topics import device_topic


def thing_name(stage: str, run_id: str, sensor_id: str) -> str:
    """Also the client id and the policy's name (a sensor id's `.` and `:` become `_`)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"iot-playground-{stage}-{run_id}-{sensor_id}")


def create_device(stage: str, run_id: str, sensor_id: str, out: Path) -> dict[str, str]:
    """The policy first: if it exists (so does the device), nothing is made. Returns what to print."""
    import boto3

    iot = boto3.client("iot")
    arn = f"arn:aws:iot:{iot.meta.region_name}:{boto3.client('sts').get_caller_identity()['Account']}"
    name, topic = thing_name(stage, run_id, sensor_id), device_topic(stage, run_id, sensor_id)
    # Connect as the thing's client id only (with its own certificate), publish to its topic only.
    attached = {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    connect = dict(Effect="Allow", Action="iot:Connect", Resource=f"{arn}:client/{name}", Condition=attached)
    publish = dict(Effect="Allow", Action="iot:Publish", Resource=f"{arn}:topic/{topic}")
    document = json.dumps({"Version": "2012-10-17", "Statement": [connect, publish]})
    iot.create_policy(policyName=name, policyDocument=document)
    iot.create_thing(thingName=name)
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName=name, target=certificate["certificateArn"])
    iot.attach_thing_principal(thingName=name, principal=certificate["certificateArn"])
    out.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = out / f"{name}.cert.pem", out / f"{name}.private.key"
    cert_file.write_text(certificate["certificatePem"])
    key_file.touch(mode=0o600)
    key_file.write_text(certificate["keyPair"]["PrivateKey"])
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    files = {"certificate": str(cert_file), "private key": str(key_file)}
    return {"endpoint": f"{endpoint}:8883", "client id": name, "topic": topic} | files


def delete_device(stage: str, run_id: str, sensor_id: str) -> list[str]:
    """Deletes the thing, its certificates and the policy, whatever is left; says what it deleted."""
    import boto3

    iot, name = boto3.client("iot"), thing_name(stage, run_id, sensor_id)
    missing, deleted, certificates = iot.exceptions.ResourceNotFoundException, [], set()
    with suppress(missing):
        certificates |= set(iot.list_thing_principals(thingName=name)["principals"])
    with suppress(missing):
        certificates |= set(iot.list_targets_for_policy(policyName=name)["targets"])
    for arn in sorted(certificates):
        certificate_id = arn.rsplit("/", 1)[1]
        with suppress(missing):
            iot.detach_thing_principal(thingName=name, principal=arn)
        with suppress(missing):
            iot.detach_policy(policyName=name, target=arn)
        iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
        iot.delete_certificate(certificateId=certificate_id)
        deleted.append(f"certificate {certificate_id}")
    for what, delete in (("thing", iot.delete_thing), ("policy", iot.delete_policy)):
        with suppress(missing):
            delete(**{f"{what}Name": name})
            deleted.append(f"{what} {name}")
    return deleted
