"""The container's client and repositories: built once, by `init()` when the app is imported
(Lambda's init phase), or on first use after `reset()`."""

from __future__ import annotations

import gc
from functools import cache

from chalicelib.aws import dynamodb_client
from chalicelib.idempotency import IdempotencyStore
from chalicelib.readings import ReadingRepository
from chalicelib.run_status import RunStatusCache
from chalicelib.runs import RunRepository
from chalicelib.settings import get_settings


@cache
def run_repository() -> RunRepository:
    settings = get_settings()
    return RunRepository(
        dynamodb_client(), settings.runs_table, settings.max_concurrent_runs, settings.max_runs_per_user
    )


@cache
def reading_repository() -> ReadingRepository:
    settings = get_settings()
    return ReadingRepository(dynamodb_client(), settings.readings_table, settings.reading_ttl_days)


@cache
def idempotency_store() -> IdempotencyStore:
    return IdempotencyStore(dynamodb_client(), get_settings().runs_table)


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

    Creating the client builds some 50,000 objects (botocore's models and endpoint data)
    that live as long as the container. The garbage collector would traverse them again
    and again while they are built, a sixth of a cold start, and at every full collection
    afterwards: it is paused meanwhile, and `gc.freeze()` then moves everything the app
    loaded out of its sight (it still collects whatever requests create)."""
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
    for accessor in (
        run_repository,
        reading_repository,
        idempotency_store,
        run_status_cache,
        dynamodb_client,
        get_settings,
    ):
        accessor.cache_clear()
