"""The DynamoDB client: created once per container, when the app is imported, and reused.

Built at import (`deps.init()` in app.py), so Lambda's init phase pays for it and a
cold start's first request does not. It is a botocore client, not a boto3 one: the app
calls only the low-level client API, which is botocore's; boto3 would add its own
import, session and resource machinery on top (the Lambda Python runtime has both).
`make bench` measures the difference (`benchmarks/coldstart.py`, "clients").

One code path everywhere: locally only the endpoint differs (`DYNAMODB_ENDPOINT`).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.loaders import Loader

from chalicelib import retry
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SERVICE = "dynamodb"
CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries=dict(retry.SDK_RETRIES),
    tcp_keepalive=True,
    max_pool_connections=50,
)


class PlainJSONFiles:
    """botocore's model files, decoded into plain dicts.

    botocore's own file loader decodes every object into an OrderedDict, through a
    Python hook called once per JSON object; its data is read-only, and plain dicts
    keep their order. Creating a client decodes the 1.2 MB endpoint file and the
    service model: this makes that two to three times faster. Same interface as
    `botocore.loaders.JSONFileLoader` (paths without extension, `.json` or `.json.gz`)."""

    _OPENERS: tuple[tuple[str, Callable[..., Any]], ...] = ((".json", open), (".json.gz", gzip.open))

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + extension) for extension, _ in self._OPENERS)

    def load_file(self, file_path: str) -> Any:
        for extension, opener in self._OPENERS:
            if os.path.isfile(file_path + extension):
                with opener(file_path + extension, "rb") as file:
                    return json.loads(file.read().decode("utf-8"))
        return None


class ServiceLoader(Loader):  # type: ignore[misc]  # botocore has no type hints
    """botocore's data loader, told which services exist instead of looking, and reading
    its files with `PlainJSONFiles`.

    Creating a client checks that its service exists by listing every service folder
    of botocore's data (400-odd folders, two file-system calls each), twice: a fifth
    of the client's creation time. The models themselves load as usual, from the
    runtime's own botocore."""

    def __init__(self, services: tuple[str, ...] = (SERVICE,)):
        super().__init__(file_loader=PlainJSONFiles())
        self._services = services

    def list_available_services(self, type_name: str) -> list[str]:
        return sorted(self._services)


def create_client(endpoint_url: str | None = None, **kwargs: Any) -> DynamoDBClient:
    """A DynamoDB client with the app's timeouts and retries; `kwargs` go to botocore's
    `create_client` (region, credentials)."""
    session = botocore.session.get_session()
    session.register_component("data_loader", ServiceLoader())
    client: DynamoDBClient = session.create_client(
        SERVICE, endpoint_url=endpoint_url, config=CONFIG, **kwargs
    )
    return client


@cache
def dynamodb_client() -> DynamoDBClient:
    """The container's client; `deps.reset()` forgets it (tests switch settings)."""
    return create_client(get_settings().dynamodb_endpoint)
