"""RUN_STATUS_CACHE_SECONDS bounds how long a container accepts readings for a run that another
container ended: still accepted just before the bound, refused from it on.

The service's monotonic clock is a fake the test steps, so the bound is checked to the
millisecond without sleeping; the run is ended through the repository (as another container
would), never through the service under test.
"""

from __future__ import annotations

import pytest

from chalicelib.runs import RUNNING, RunRepository, RunService
from chalicelib.schemas import RunNotRunning, RunParams
from tests.conftest import reset_app

JUST_BEFORE = 0.001  # a little less than the bound: "just before it elapses"


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 5000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(clock: SteppedClock) -> RunService:
    """The app's run service, built from the settings as the app builds it, on the stepped clock."""
    import app

    return RunService(app.parts().runs.repository, app.parts().settings, monotonic=clock)


def start(runs: RunService) -> str:
    return runs.start("alice", RunParams(sensorIds=["s-1"], duration=3600, interval=1)).id


@pytest.mark.parametrize(("setting", "ttl"), [(None, 2.0), ("0.5", 0.5), ("45", 45.0)])
def test_a_run_ended_elsewhere_is_refused_once_the_setting_has_elapsed(aws, monkeypatch, setting, ttl):
    if setting is None:
        monkeypatch.delenv("RUN_STATUS_CACHE_SECONDS", raising=False)  # the documented default
    else:
        monkeypatch.setenv("RUN_STATUS_CACHE_SECONDS", setting)
    reset_app()
    clock = SteppedClock()
    runs = service(clock)
    run_id = start(runs)
    learned_at = clock.now
    assert runs.require_running(run_id).status == RUNNING  # remembered for the TTL
    runs.repository.end(run_id, "SUCCESS", None, "another container")
    clock.now = learned_at + ttl - JUST_BEFORE
    assert runs.require_running(run_id).status == RUNNING  # still within the bound: accepted
    clock.now = learned_at + ttl
    with pytest.raises(RunNotRunning) as refused:
        runs.require_running(run_id)
    assert refused.value.extra == {"status": "SUCCESS"}


def test_a_known_answer_is_not_read_again_within_the_ttl(aws, monkeypatch):
    """The other side of the bound: within it, the hot path is spared its read."""
    clock = SteppedClock()
    runs = service(clock)
    run_id = start(runs)
    reads: list[str] = []
    get = RunRepository.get

    def counted_get(self: RunRepository, run_id: str) -> object:
        reads.append(run_id)
        return get(self, run_id)

    monkeypatch.setattr(RunRepository, "get", counted_get)
    runs.forget(run_id)
    runs.require_running(run_id)
    clock.now += runs._settings.run_status_cache_seconds - JUST_BEFORE
    runs.require_running(run_id)
    assert reads == [run_id]
    clock.now += JUST_BEFORE
    runs.require_running(run_id)
    assert reads == [run_id, run_id]
