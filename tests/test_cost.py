"""docs/cost.md is the cost model's output, and the model prices what the design says: one EMF
line, one item, 1 write unit and ~350 B a reading, one custom metric a stage, the dashboard's
Logs Insights queries; the always-on design grows with volume, and the bills cross."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import cost
from benchmarks.cost import EXAMPLE
from iot_playground.deploy import prices

DOC = Path(__file__).resolve().parent.parent / "docs" / "cost.md"


def test_docs_cost_md_is_the_models_output():
    assert DOC.read_text() == cost.markdown(), (
        "docs/cost.md is stale: python -m benchmarks.cost > docs/cost.md"
    )
    assert len(DOC.read_text().splitlines()) <= 150


def test_the_design_facts_are_the_specified_ones():
    line = json.dumps(EXAMPLE, separators=(",", ":")) + "\n"
    assert len(line.encode()) == cost.LINE_BYTES
    for batch, post in cost.DESIGN.posts.items():
        assert post.write_units_per_reading == 1 and post.stored_bytes_per_reading == 350
        assert post.log_bytes == batch * cost.LINE_BYTES  # one line a reading, whatever the body
    assert (cost.DESIGN.metrics_per_stage, cost.DESIGN.metrics_per_run) == (1, 0)
    assert cost.DESIGN.logs_queries_per_refresh == cost.logs_queries_per_refresh(cost.BOARD) > 0


def test_every_line_is_priced_from_the_table_and_adds_up():
    bill = cost.app_bill(10_000, 1)
    items = {line["item"]: line for line in bill["lines"]}
    assert items["CloudWatch custom metrics"]["usd"] == round(
        prices.tiered(cost.MONTH_HOURS / prices.HOURS_PER_MONTH, prices.CLOUDWATCH_CUSTOM_METRICS), 2
    )
    writes = 10_000 * cost.MONTH_DAYS / 1e6 * prices.DYNAMODB_WRITE.usd
    assert items["DynamoDB writes"]["usd"] == round(writes, 2)
    assert all(line["assumption"] for line in bill["lines"])
    for scenario in (bill, cost.fargate_bill(10_000)):
        assert scenario["total_usd"] == round(sum(line["usd"] for line in scenario["lines"]), 2)


def test_the_always_on_design_scales_in_steps_and_the_bills_cross():
    small, large = cost.fargate_bill(10_000), cost.fargate_bill(100_000_000)
    assert small["total_usd"] == cost.fargate_bill(1_000)["total_usd"]  # the always-on floor
    instance = {bill["readings_per_day"]: bill["lines"][4]["quantity"] for bill in (small, large)}
    assert instance == {10_000: "db.t4g.micro", 100_000_000: "db.m6g.xlarge"}
    assert cost.app_bill(10_000, 1)["total_usd"] < small["total_usd"]
    assert cost.app_bill(100_000_000, 1)["total_usd"] > large["total_usd"]
    crossing = cost.crossover(1)
    assert crossing is not None and 10_000 < crossing[0] < 100_000_000
    app, fargate = cost.app_bill(crossing[0], 1), cost.fargate_bill(crossing[0])
    assert app["total_usd"] > fargate["total_usd"]


def test_docs_mqtt_md_states_the_models_cost_per_million_readings():
    mqtt_md = DOC.with_name("mqtt.md").read_text()
    assert cost.mqtt_cost_line() in mqtt_md
    assert cost.per_million_readings("mqtt") < cost.per_million_readings("http")
    # Without API Gateway's request, HTTP would cost what MQTT costs without IoT Core and SQS.
    device = prices.IOT_MESSAGING.usd + prices.IOT_RULES.usd + prices.IOT_ACTIONS.usd
    sqs = cost.SQS_REQUESTS_PER_MESSAGE * prices.SQS_REQUESTS.usd
    mqtt_without = cost.per_million_readings("mqtt") - device - sqs
    http_without = cost.per_million_readings("http") - prices.API_GATEWAY_REST.usd
    assert http_without > mqtt_without  # HTTP's extra invocations and START/END lines
