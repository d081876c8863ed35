"""Names vulture cannot see used (tests/test_dead_code.py): fields msgspec encodes and decodes
by name, and attributes that Lambda's runtime, the AWS libraries or the standard library read."""

from benchmarks.lambda_event import Context
from chalicelib import analytics, runs, schemas
from iot_playground.deploy import prices

_ = (
    analytics.SeriesView.lastValue,
    analytics.SeriesView.largestGapMs,
    analytics.RunStatsView.declaredSensors,
    analytics.SeriesAnswer.intervalMs,
    analytics.SeriesAnswer.from_,
    analytics.SeriesAnswer.buckets,
    analytics.SeriesAnswer.nextFrom,
    runs.RunView.startedAt,
    runs.RunView.finishedAt,
    schemas.ReadingIn.temperature,
    schemas.ReadingIn.humidity,
    schemas.ReadingIn.pressure,
    prices.LAMBDA_REQUESTS.per,
    Context.function_version,
    Context.memory_limit_in_mb,
    Context.invoked_function_arn,
    Context.log_group_name,
    Context.log_stream_name,
)
