"""Local DynamoDB endpoints (`make run`'s, DynamoDB Local, moto) take any credentials: these."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def local_session(env: Mapping[str, str] = LOCAL_CREDENTIALS) -> Any:
    """A boto3 session with the credentials and region of `env`, not the environment's."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def endpoint_client(endpoint: str, env: Mapping[str, str] = LOCAL_CREDENTIALS) -> DynamoDBClient:
    client: DynamoDBClient = local_session(env).client("dynamodb", endpoint_url=endpoint)
    return client
