"""Each deploy stage's limits clear the frontend's worst case, and a day-long flood at them costs
at most $300 in dev and $1,500 in prod (iot_playground/deploy/capacity.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from iot_playground.cli import main
from iot_playground.common.stages import DEPLOY_STAGES, Stage, load_config
from iot_playground.deploy import capacity, resources

CEILING_USD = {"dev": 300, "prod": 1_500}


@pytest.fixture(params=DEPLOY_STAGES)
def stage(request: pytest.FixtureRequest) -> Stage:
    return Stage.load(request.param)


def test_the_limits_clear_the_legitimate_worst_case(stage):
    runs = int(stage.environment["MAX_CONCURRENT_RUNS"])
    tabs = capacity.OPEN_TABS[stage.name]
    # Written out again: 100 sensors every 200 ms per run, all at once; 2.2 polls/s per tab, 3 at once.
    per_second, at_once = runs * 100 / 0.2 + tabs * 2.2, runs * 100 + tabs * 3
    throttling = stage.settings["api_gateway_throttling"]
    assert throttling["rate_limit"] >= per_second * 11 / 10 and throttling["burst_limit"] >= at_once * 11 / 10
    assert stage.settings["reserved_concurrency"] >= max(throttling["burst_limit"], per_second * 0.1)
    caps = {t["key"]: t["throughput"] for t in resources.describe(stage)["tables"]}
    # One write unit a reading (one item under 1 KB), whatever the request's shape.
    assert caps["readings"]["MaxWriteRequestUnits"] >= runs * 500 * 11 / 10
    # Each tab's two polls read the runs table, each busy execution its run's status every 2 s.
    assert caps["runs"]["MaxReadRequestUnits"] >= 2 * tabs + stage.settings["reserved_concurrency"] / 2


def test_a_day_at_the_limits_costs_at_most_the_stages_ceiling(stage):
    described = resources.describe(stage)
    cost = capacity.ceiling(stage, described["tables"])
    assert cost["total"] <= CEILING_USD[stage.name]
    day, rate = 86_400, stage.settings["api_gateway_throttling"]["rate_limit"]
    gb = stage.settings["reserved_concurrency"] * stage.settings["lambda_memory_size"] / 1024
    assert cost["api_gateway"] == pytest.approx(rate * day / 1e6 * 3.71)
    assert cost["lambda_compute"] == pytest.approx(gb * day * 0.0000166667)
    # Every table and index at its maximum: the batch route (500 WRU a request) is held there.
    writes = sum(
        (1 + len(t["indexes"])) * t["throughput"]["MaxWriteRequestUnits"] for t in described["tables"]
    )
    assert cost["dynamodb_writes"] == pytest.approx(writes * day / 1e6 * 0.7423)
    parts = ("api_gateway", "lambda_requests", "lambda_compute", "dynamodb_writes", "dynamodb_reads")
    assert cost["total"] == pytest.approx(sum(cost[part] for part in parts))
    assert described["budget"]["usd"] == round(cost["total"] / 10)  # the alert: 2.4 hours at the limits


def test_capacity_prints_each_stages_ceiling_and_check_fails_on_drift(monkeypatch):
    result = CliRunner().invoke(main, ["capacity", "--check"])
    assert result.exit_code == 0, result.output
    for name in DEPLOY_STAGES:
        stage = Stage.load(name)
        total = capacity.ceiling(stage, resources.describe(stage)["tables"])["total"]
        assert f"= ${total:,.2f}/day ceiling" in result.output
    config = load_config()
    config["stages"]["dev"]["api_gateway_throttling"]["rate_limit"] = 20
    monkeypatch.setattr(capacity, "load_config", lambda: config)
    drifted = CliRunner().invoke(main, ["capacity", "--check"])
    assert drifted.exit_code == 1 and "differs for dev" in drifted.stderr
