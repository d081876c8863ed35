"""Runtime configuration, read once per container from environment variables.

Every stage in `.chalice/config.json` sets these; the defaults are the ones a
developer gets under `make run`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cache

from chalicelib.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Settings:
    stage: str
    version: str
    runs_table: str
    readings_table: str
    max_concurrent_runs: int
    max_runs_per_user: int
    run_grace_seconds: int
    reading_ttl_days: int
    run_status_cache_seconds: float
    grafana_url: str
    cors_origins: tuple[str, ...]
    dynamodb_endpoint: str | None
    token_secret: str
    # `chalice local` does not check API keys: under STAGE=local the app compares x-api-key
    # with this for the routes that need the admin key; API Gateway does it everywhere else.
    admin_api_key: str
    # Report downloads: the newest finished runs in the ZIP, and the bucket that hands out
    # the downloads too large for a Lambda response (chalicelib/report_store.py).
    report_runs: int
    reports_bucket: str
    s3_endpoint: str | None


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


# An origin as a browser sends it in `Origin`: scheme, host and an optional port, nothing more.
_ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s,]+(?!\n)$", re.IGNORECASE)


def _origins(name: str, default: str) -> tuple[str, ...]:
    """`*` (any origin) or a comma-separated list of origins, compared with `Origin` as sent."""
    raw = os.environ.get(name, "").strip() or default
    origins = tuple(dict.fromkeys(o.strip().rstrip("/") for o in raw.split(",") if o.strip()))
    if origins == ("*",):
        return origins
    bad = [o for o in origins if not _ORIGIN_RE.match(o)]
    if bad or not origins:
        raise ConfigurationError(
            f"{name} must be * or a comma-separated list of origins like https://app.example.com, got {raw!r}"
        )
    return origins


def load_settings() -> Settings:
    stage = os.environ.get("STAGE", "local")
    return Settings(
        stage=stage,
        version=os.environ.get("APP_VERSION", "0.1.0"),
        runs_table=os.environ.get("RUNS_TABLE", f"iot-playground-runs-{stage}"),
        readings_table=os.environ.get("READINGS_TABLE", f"iot-playground-readings-{stage}"),
        max_concurrent_runs=_int("MAX_CONCURRENT_RUNS", 5, minimum=1),
        max_runs_per_user=_int("MAX_RUNS_PER_USER", 2, minimum=1),
        run_grace_seconds=_int("RUN_GRACE_SECONDS", 120),
        reading_ttl_days=_int("READING_TTL_DAYS", 30),
        run_status_cache_seconds=_float("RUN_STATUS_CACHE_SECONDS", 2.0),
        grafana_url=os.environ.get("GRAFANA_URL", "").rstrip("/"),
        cors_origins=_origins("CORS_ORIGIN", "*"),
        dynamodb_endpoint=os.environ.get("DYNAMODB_ENDPOINT") or None,
        token_secret=_token_secret(stage),
        admin_api_key=os.environ.get("ADMIN_API_KEY", ""),
        report_runs=_int("REPORT_RUNS", 20, minimum=1),
        reports_bucket=os.environ.get("REPORTS_BUCKET") or f"iot-playground-reports-{stage}",
        s3_endpoint=os.environ.get("S3_ENDPOINT") or None,
    )


# Stages that serve only this machine (`make run`, the tests): the built-in secret will do.
_LOCAL_STAGES = frozenset({"local", "test"})
_BUILT_IN_TOKEN_SECRET = "iot-playground-pagination"


def _token_secret(stage: str) -> str:
    """Signs pagination tokens so a tampered token is refused, not queried. The built-in
    one is public (it is in this file): a deployed stage must not sign with it."""
    secret = os.environ.get("PAGINATION_TOKEN_SECRET", "").strip()
    if secret:
        return secret
    if stage in _LOCAL_STAGES:
        return _BUILT_IN_TOKEN_SECRET
    message = (
        f"PAGINATION_TOKEN_SECRET is not set for stage {stage!r}: set it to 32 or more random "
        "characters (the built-in secret is public and would let anyone forge page tokens)"
    )
    # The logger needs these settings: this line is written by hand, in the logger's format.
    sys.stderr.write(json.dumps({"level": "ERROR", "message": message, "stage": stage}) + "\n")
    raise ConfigurationError(message)


@cache
def get_settings() -> Settings:
    return load_settings()
