"""The app's structured logger: JSON lines with level, message and request id."""

from __future__ import annotations

from aws_lambda_powertools.logging import Logger

logger = Logger(service="iot-playground")
