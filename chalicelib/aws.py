"""boto3 clients, created lazily and once per container.

Importing boto3 costs tens of milliseconds, so it happens on first use rather
than at import time; warm invocations reuse the client and its connections.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@cache
def dynamodb_client() -> DynamoDBClient:
    import boto3
    from botocore.config import Config

    settings = get_settings()
    config = Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": "standard", "max_attempts": 4},
        tcp_keepalive=True,
        max_pool_connections=50,
    )
    # One code path everywhere: locally only the endpoint differs.
    client: DynamoDBClient = boto3.session.Session().client(
        "dynamodb", endpoint_url=settings.dynamodb_endpoint, config=config
    )
    return client
