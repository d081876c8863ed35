"""The container's client and repositories: built once, by `init()` when the app is imported
(Lambda's init phase), or on first use after `reset()`."""

from __future__ import annotations

import gc
from functools import cache
from typing import TYPE_CHECKING

from chalicelib.idempotency import IdempotencyStore
from chalicelib.readings import ReadingRepository
from chalicelib.run_status import RunStatusCache
from chalicelib.runs import RunRepository
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from chalicelib.run_stats import RunStatsStore


def _client() -> DynamoDBClient:
    # Imported here, not at the top: botocore's client machinery loads in init(), while the
    # garbage collector is paused (readings, runs and retry only need botocore's exceptions).
    from chalicelib.aws import dynamodb_client

    return dynamodb_client()


@cache
def run_repository() -> RunRepository:
    settings = get_settings()
    return RunRepository(
        _client(), settings.runs_table, settings.max_concurrent_runs, settings.max_runs_per_user
    )


@cache
def reading_repository() -> ReadingRepository:
    settings = get_settings()
    return ReadingRepository(_client(), settings.readings_table, settings.reading_ttl_days)


@cache
def idempotency_store() -> IdempotencyStore:
    return IdempotencyStore(_client(), get_settings().runs_table)


@cache
def run_stats_store() -> RunStatsStore:
    # Imported here: only the analytics routes need it (see run_stats.py).
    from chalicelib.run_stats import RunStatsStore

    return RunStatsStore(_client(), get_settings().runs_table, reading_repository())


@cache
def run_status_cache() -> RunStatusCache:
    settings = get_settings()
    return RunStatusCache(
        run_repository(),
        ttl_seconds=settings.run_status_cache_seconds,
        grace_seconds=settings.run_grace_seconds,
    )


def init() -> None:
    """Build the client and the repositories now: app.py calls this at import, so a cold
    start's first request finds them ready.

    Importing botocore's client machinery and creating the client build some 50,000
    objects (modules, models, endpoint data) that live as long as the container. The
    garbage collector would traverse them again and again while they are built, a sixth
    of a cold start, and at every full collection afterwards: it is paused meanwhile, and
    `gc.freeze()` then moves everything the app loaded out of its sight (it still
    collects whatever requests create)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        run_status_cache()
        reading_repository()
        idempotency_store()
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def reset() -> None:
    """Forget every cached client and repository (tests switch settings between cases)."""
    from chalicelib.aws import dynamodb_client
    from chalicelib.report_store import s3_client

    for accessor in (
        run_repository,
        reading_repository,
        idempotency_store,
        run_status_cache,
        run_stats_store,
        dynamodb_client,
        s3_client,
        get_settings,
    ):
        accessor.cache_clear()
