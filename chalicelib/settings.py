"""Runtime configuration, read from environment variables when the app builds its parts.

Every stage of `.chalice/config.json` sets these; the defaults are what `make run` uses.
"""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec
from aws_lambda_powertools.logging import Logger

from chalicelib import tables

logger = Logger(service="iot-playground")

# Stages that serve only this machine (`make run`, the tests): the built-in token secret will do.
LOCAL_STAGES = frozenset({"local", "test"})
_PUBLIC_TOKEN_SECRET = "iot-playground-pagination"
# An origin as a browser sends it: scheme, host and an optional port, nothing more.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s,]+(?!\n)$", re.IGNORECASE)


class ConfigurationError(RuntimeError):
    """The environment holds a setting the app cannot use."""


class Settings(msgspec.Struct, frozen=True):
    stage: str
    version: str
    runs_table: str
    readings_table: str
    idempotency_table: str
    max_concurrent_runs: int
    max_runs_per_user: int
    run_grace_seconds: int
    reading_ttl_days: int
    # How long a container trusts a run's status before reading it again (ingest's hot path).
    run_status_cache_seconds: float
    grafana_url: str
    cors_origins: tuple[str, ...]
    dynamodb_endpoint: str | None
    token_secret: str
    report_runs: int
    reports_bucket: str
    s3_endpoint: str | None


def _number(name: str, default: int, minimum: int = 0, kind: type[float] = int) -> Any:
    raw = os.environ.get(name, "").strip()
    try:
        value = kind(raw) if raw else default
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a{'n integer' if kind is int else ' number'}, got {raw!r}"
        ) from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    """`*` (any origin) or a comma-separated list of origins, compared with `Origin` as sent."""
    origins = tuple(
        dict.fromkeys(o.strip().rstrip("/") for o in (raw.strip() or "*").split(",") if o.strip())
    )
    if origins != ("*",) and (not origins or not all(_ORIGIN.match(o) for o in origins)):
        raise ConfigurationError(
            "CORS_ORIGIN must be * or a comma-separated list of origins like https://app.example.com,"
            f" got {raw!r}"
        )
    return origins


def _token_secret(stage: str) -> str:
    """Signs page tokens, so that an edited token is refused. The built-in one is public: a
    deployed stage must set its own."""
    secret = os.environ.get("PAGINATION_TOKEN_SECRET", "").strip()
    if secret or stage in LOCAL_STAGES:
        return secret or _PUBLIC_TOKEN_SECRET
    raise ConfigurationError(
        f"PAGINATION_TOKEN_SECRET is not set for stage {stage!r}: set it to 32 or more random characters"
    )


def load_settings() -> Settings:
    env = os.environ.get
    stage = env("STAGE", "local")
    return Settings(
        stage=stage,
        version=env("APP_VERSION", "0.1.0"),
        runs_table=env(tables.RUNS.setting, f"iot-playground-runs-{stage}"),
        readings_table=env(tables.READINGS.setting, f"iot-playground-readings-{stage}"),
        idempotency_table=env(tables.IDEMPOTENCY.setting, f"iot-playground-idempotency-{stage}"),
        max_concurrent_runs=_number("MAX_CONCURRENT_RUNS", 5, minimum=1),
        max_runs_per_user=_number("MAX_RUNS_PER_USER", 2, minimum=1),
        run_grace_seconds=_number("RUN_GRACE_SECONDS", 120),
        reading_ttl_days=_number("READING_TTL_DAYS", 30),
        run_status_cache_seconds=_number("RUN_STATUS_CACHE_SECONDS", 2, kind=float),
        grafana_url=env("GRAFANA_URL", "").rstrip("/"),
        cors_origins=_origins(env("CORS_ORIGIN", "")),
        dynamodb_endpoint=env("DYNAMODB_ENDPOINT") or None,
        token_secret=_token_secret(stage),
        report_runs=_number("REPORT_RUNS", 20, minimum=1),
        reports_bucket=env("REPORTS_BUCKET") or f"iot-playground-reports-{stage}",
        s3_endpoint=env("S3_ENDPOINT") or None,
    )
