"""The reports bucket: downloads too large for a Lambda response are put here and handed out
through a presigned GET URL (see reports.download).

The S3 client is made on the first download that needs it, not at import: most requests
never do, and a cold start should not pay for it. Like the DynamoDB client (aws.py) it is
botocore's, with the same model loader. Objects are never read back by the app; the bucket
expires them after a day (iot_playground/deploy/reports_bucket.py). A retried upload writes a new
object under a new key: safe, and gone the next day.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any

from botocore.config import Config

from chalicelib import clock, retry
from chalicelib.settings import get_settings

# How long a download link works.
LINK_SECONDS = 300
# Where uploads go in the bucket (the lifecycle rule covers the whole bucket).
KEY_PREFIX = "downloads/"


def _config(endpoint: str | None) -> Config:
    return Config(
        connect_timeout=2,
        read_timeout=10,
        retries=dict(retry.SDK_RETRIES),
        signature_version="s3v4",
        # A local endpoint (moto on loopback) has no per-bucket host names.
        s3={"addressing_style": "path" if endpoint else "virtual"},
    )


@cache
def s3_client() -> Any:
    """The container's S3 client; `deps.reset()` forgets it."""
    import botocore.session

    from chalicelib.aws import ServiceLoader

    endpoint = get_settings().s3_endpoint
    session = botocore.session.get_session()
    session.register_component("data_loader", ServiceLoader(("s3",)))
    return session.create_client("s3", endpoint_url=endpoint, config=_config(endpoint))


def put_and_link(data: bytes, *, content_type: str, filename: str) -> str:
    """Put `data` in the reports bucket; returns a GET URL for it, valid LINK_SECONDS."""
    bucket = get_settings().reports_bucket
    stamp = clock.format_ms(clock.now_ms())[:19].replace(":", "")
    key = f"{KEY_PREFIX}{stamp}-{secrets.token_hex(8)}/{filename}"
    s3 = s3_client()
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    url: str = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseContentType": content_type,
        },
        ExpiresIn=LINK_SECONDS,
    )
    return url
