"""The app's parts: its settings, AWS clients and repositories, built once per container.

`app.py` builds them when it is imported (Lambda's init phase), so a cold start's first request
finds the DynamoDB client ready; what only some routes need (analytics, the S3 client, Powertools
Idempotency) is built on its first use. One code path everywhere: locally only the endpoints
differ (`DYNAMODB_ENDPOINT`, `S3_ENDPOINT`). The clients are botocore's: the app calls the
low-level API only, and boto3's session machinery would add to every cold start.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import botocore.session
from botocore.config import Config

from chalicelib.readings import ReadingRepository
from chalicelib.runs import RunRepository, RunService
from chalicelib.schemas import SDK_RETRIES, raise_when_busy
from chalicelib.settings import Settings

# One session per container: its loader reads each service's model once. Its components are made
# with the DynamoDB client, at import, before any thread of `chalice local` asks for another client.
SESSION = botocore.session.get_session()


def client(service: str, endpoint_url: str | None, **config: Any) -> Any:
    """A client with the app's timeouts and retries; what it still cannot do for a passing reason
    raises `Unavailable` (a 503)."""
    options = {"connect_timeout": 2, "read_timeout": 5, "max_pool_connections": 50, **config}
    config_ = Config(retries=dict(SDK_RETRIES), tcp_keepalive=True, **options)
    made = SESSION.create_client(service, endpoint_url=endpoint_url, config=config_)
    for event in ("after-call", "after-call-error"):
        made.meta.events.register(
            f"{event}.{made.meta.service_model.service_id.hyphenize()}", raise_when_busy
        )
    return made


class Parts:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.dynamodb = client("dynamodb", settings.dynamodb_endpoint)
        runs = RunRepository(
            self.dynamodb, settings.runs_table, settings.max_concurrent_runs, settings.max_runs_per_user
        )
        self.runs = RunService(runs, settings)
        self.readings = ReadingRepository(self.dynamodb, settings.readings_table, settings.reading_ttl_days)

    @cached_property
    def analytics(self) -> Any:
        from chalicelib.analytics import RunAnalytics, settle_ms

        settle = settle_ms(self.settings.run_status_cache_seconds)
        return RunAnalytics(self.dynamodb, self.settings.runs_table, self.readings, settle)

    @cached_property
    def idempotency(self) -> Any:
        from chalicelib.http import idempotency

        return idempotency(self.dynamodb, self.settings.idempotency_table)

    @cached_property
    def s3(self) -> Any:
        endpoint = self.settings.s3_endpoint  # a local endpoint has no per-bucket host names
        style = {"addressing_style": "path" if endpoint else "virtual"}
        return client("s3", endpoint, signature_version="s3v4", s3=style)

    def put_in_bucket(self, data: bytes, key: str, content_type: str, filename: str) -> str:
        from chalicelib.reports import put_and_link

        return put_and_link(self.s3, self.settings.reports_bucket, data, key, content_type, filename)
