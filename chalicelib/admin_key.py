"""The admin API key of the routes declared with `api_key_required` (interrupt-all).

On AWS, API Gateway checks the key: a request without a key of the stage's usage plan is
answered 403 (the `INVALID_API_KEY` gateway response, in this API's error format) before
any Lambda runs. `chalice local` checks no API key, so under the local stage (`make run`)
the app compares `x-api-key` with the ADMIN_API_KEY setting itself, with the same answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from chalicelib.http_errors import Forbidden
from chalicelib.settings import Settings

HEADER = "x-api-key"
LOCAL_STAGE = "local"
# Also the message of API Gateway's own refusal (iot_playground/deploy/guardrails.py).
MESSAGE = "this route needs the admin API key in the x-api-key header"


def refusal(headers: Mapping[str, str], settings: Settings) -> Forbidden | None:
    """The 403 for a request without the right key under the local stage; None otherwise
    (elsewhere API Gateway has already checked it). No key configured refuses every request."""
    if settings.stage != LOCAL_STAGE:
        return None
    expected = settings.admin_api_key.encode()
    given = (headers.get(HEADER) or "").encode()
    if expected and hmac.compare_digest(given, expected):
        return None
    return Forbidden(MESSAGE)
