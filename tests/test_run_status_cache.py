"""RUN_STATUS_CACHE_SECONDS bounds how long a container accepts readings for a run
that another container ended: still accepted just before the bound, refused from it on.

The cache's monotonic clock is a fake the test steps, so the bound is checked to the
millisecond without sleeping; the run is ended through a repository of its own (as
another container would), never through the cache under test.
"""

from __future__ import annotations

import functools

import pytest

from chalicelib import deps
from chalicelib.aws import dynamodb_client
from chalicelib.errors import RunNotRunning
from chalicelib.run_shape import RUNNING
from chalicelib.run_status import RunStatusCache
from chalicelib.runs import RunRepository
from chalicelib.settings import get_settings

# A little less than the bound: what "just before it elapses" means here.
JUST_BEFORE = 0.001


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 5000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stepped_clock(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    """The clock of the cache `deps.run_status_cache()` builds (from the settings, as the app does)."""
    clock = SteppedClock()
    monkeypatch.setattr(deps, "RunStatusCache", functools.partial(RunStatusCache, monotonic=clock))
    return clock


def end_elsewhere(run_id: str) -> None:
    """What another container does: end the run in the table, unknown to this container's cache."""
    settings = get_settings()
    RunRepository(dynamodb_client(), settings.runs_table, settings.max_concurrent_runs).end(run_id, "SUCCESS")


@pytest.mark.parametrize(("setting", "ttl"), [(None, 2.0), ("0.5", 0.5), ("45", 45.0)])
def test_a_run_ended_elsewhere_is_refused_once_the_setting_has_elapsed(
    aws, stepped_clock, monkeypatch, setting, ttl
):
    if setting is None:
        monkeypatch.delenv("RUN_STATUS_CACHE_SECONDS", raising=False)  # the documented default
    else:
        monkeypatch.setenv("RUN_STATUS_CACHE_SECONDS", setting)
    deps.reset()  # settings and the cache are read again, with this environment
    run = deps.run_repository().start(username="alice", sensor_ids=["s-1"], duration=3600, interval=1)
    cache = deps.run_status_cache()

    learned_at = stepped_clock.now
    assert cache.require_running(run.id).status == RUNNING  # looked up now, remembered for the TTL
    end_elsewhere(run.id)

    stepped_clock.now = learned_at + ttl - JUST_BEFORE
    assert cache.require_running(run.id).status == RUNNING  # still within the bound: accepted

    stepped_clock.now = learned_at + ttl
    with pytest.raises(RunNotRunning) as refused:
        cache.require_running(run.id)
    assert refused.value.extra == {"status": "SUCCESS"}


def test_a_cached_answer_is_not_read_again_within_the_ttl(aws, stepped_clock, monkeypatch):
    """The other side of the bound: within it, the cache spares the hot path its read."""
    deps.reset()
    run = deps.run_repository().start(username="bob", sensor_ids=["s-1"], duration=3600, interval=1)
    cache = deps.run_status_cache()
    reads: list[str] = []
    get = RunRepository.get

    def counting_get(self: RunRepository, run_id: str, **kwargs: object) -> object:
        reads.append(run_id)
        return get(self, run_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RunRepository, "get", counting_get)
    cache.require_running(run.id)
    stepped_clock.now += get_settings().run_status_cache_seconds - JUST_BEFORE
    cache.require_running(run.id)
    assert reads == [run.id]
    stepped_clock.now += JUST_BEFORE
    cache.require_running(run.id)
    assert reads == [run.id, run.id]
