"""The deploy stages' throttles and reserved concurrency against the arithmetic that sizes
them (iot_playground/deploy/capacity.py, README "Capacity and throttling")."""

from __future__ import annotations

import math
import re

import pytest
from click.testing import CliRunner

from iot_playground.cli import main
from iot_playground.common.stages import DEPLOY_STAGES, PROJECT_ROOT, Stage, load_config
from iot_playground.deploy import capacity

README = PROJECT_ROOT / "README.md"


@pytest.fixture(params=DEPLOY_STAGES)
def stage(request: pytest.FixtureRequest) -> Stage:
    return Stage.load(request.param)


def test_config_holds_the_derived_throttle_and_concurrency(stage):
    runs = int(stage.environment["MAX_CONCURRENT_RUNS"])
    tabs = capacity.OPEN_TABS[stage.name]
    # The arithmetic, written out again: 100 sensors every 200 ms per run, 2.2 polls/s per tab.
    legit_rate = runs * 100 / 0.2 + tabs * 2.2
    legit_at_once = runs * 100 + tabs * 3
    rate = math.ceil(round(1.25 * legit_rate, 6))
    burst = math.ceil(round(1.25 * legit_at_once, 6))
    concurrency = max(math.ceil(round(rate * 0.1, 6)), burst)
    throttling = stage.settings["api_gateway_throttling"]
    assert (throttling["rate_limit"], throttling["burst_limit"]) == (rate, burst)
    assert stage.settings["reserved_concurrency"] == concurrency
    assert capacity.configured(stage) == capacity.derived(capacity.sizing_for(stage))


def test_limits_clear_the_frontends_worst_case(stage):
    sizing = capacity.sizing_for(stage)
    load = sizing.workload
    assert load.runs == stage.app_settings.max_concurrent_runs
    assert sizing.rate_limit >= load.requests_per_second * capacity.HEADROOM
    assert sizing.burst_limit >= load.requests_at_once * capacity.HEADROOM
    # Little's law at the throttle, and a whole burst in flight at once.
    assert sizing.reserved_concurrency >= sizing.rate_limit * capacity.REQUEST_SECONDS
    assert sizing.reserved_concurrency >= sizing.burst_limit


def test_check_fails_when_config_drifts_from_the_arithmetic(monkeypatch):
    config = load_config()
    assert capacity.apply(config) == config
    config["stages"]["dev"]["api_gateway_throttling"]["rate_limit"] = 20  # the old, too-low value
    monkeypatch.setattr(capacity, "load_config", lambda: config)
    result = CliRunner().invoke(main, ["capacity", "--check"])
    assert result.exit_code == 1, result.output
    assert "differs for dev" in result.stderr


def test_ceiling_is_a_day_at_the_limits_at_paris_prices():
    dev = Stage.load("dev")
    sizing = capacity.sizing_for(dev)
    cost = capacity.ceiling(sizing, capacity.stage_memory_mb(dev))
    day = 86_400
    requests = sizing.rate_limit * day
    assert cost.api_gateway == pytest.approx(requests / 1e6 * 3.71)
    assert cost.lambda_requests == pytest.approx(requests / 1e6 * 0.20)
    assert cost.lambda_compute == pytest.approx(sizing.reserved_concurrency * 0.5 * day * 0.0000166667)
    # Batches of 500 readings, at worst one 1-unit chunk each (no index on the readings table),
    # hit DynamoDB's 40,000 items/s table quota first.
    assert capacity.WRITE_UNITS_PER_READING == 1
    assert cost.write_units == 40_000 * day
    assert cost.dynamodb == pytest.approx(40_000 * day / 1e6 * 0.7423)
    single = capacity.ceiling(sizing, 512, write_units_per_request=1)
    assert single.dynamodb == pytest.approx(requests / 1e6 * 0.7423)
    assert single.total < cost.total


def test_readme_states_each_stages_numbers(stage):
    text = README.read_text()
    section = text[text.index("## Capacity and throttling") :]
    sizing = capacity.sizing_for(stage)
    cost = capacity.ceiling(sizing, capacity.stage_memory_mb(stage))
    row = next(line for line in section.splitlines() if line.startswith(f"| `{stage.name}` "))
    numbers = set(re.findall(r"[\d,]+(?:\.\d+)?", row))
    for value in (sizing.rate_limit, sizing.burst_limit, sizing.reserved_concurrency):
        assert f"{value:,}" in numbers or str(value) in numbers, (value, row)
    assert f"${cost.total:,.0f}" in row, row
