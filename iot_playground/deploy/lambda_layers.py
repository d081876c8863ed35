"""The Lambda runtime and the Powertools layer the functions run with, checked together.

Powertools for AWS Lambda is not vendored into deployment.zip: each stage in
`.chalice/config.json` lists its public layer (`layers`), published by AWS in account
017000801446 in every commercial region, one layer per Python version and architecture:

    arn:aws:lambda:<region>:017000801446:layer:AWSLambdaPowertoolsPythonV3-<python311>-<x86_64>:<version>

ASSUMPTION: both stages deploy to eu-west-3 (Paris), the region of the cost figures; a
stage deployed elsewhere needs the region in its layer ARN changed (Lambda refuses a layer
from another region).

The layer version is the Powertools release's: AWS publishes one layer version per release,
from 1 for 3.0.0 (the docs give 3 for 3.2.0, 26 for 3.22.1, 27 for 3.23.0, each the release's
position among the v3 releases on PyPI). 3.37.0, pinned in requirements-dev.txt, is the 40th.
Before deploying, AWS confirms it: `aws ssm get-parameter --region eu-west-3 --name
/aws/service/powertools/python/x86_64/python3.11/3.37.0` answers the ARN.

The runtime is not a Chalice setting: Chalice 1.34 takes it from the interpreter that
packages (python3.11 here). `lambda_runtime` in the config states it, and packaging refuses
an interpreter of another version, so runtime, compiled wheels (msgspec) and layer agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from iot_playground.common.stages import PROJECT_ROOT, Stage

POWERTOOLS_ACCOUNT = "017000801446"
POWERTOOLS_DISTRIBUTION = "aws-lambda-powertools"
# Powertools release -> its layer version (see the module docstring).
POWERTOOLS_LAYER_VERSIONS = {"3.37.0": 40}
RUNTIME_KEY = "lambda_runtime"
_LAYER_ARN = re.compile(
    r"^arn:aws:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:"
    r"AWSLambdaPowertoolsPythonV3-(?P<python>python3\d+)-(?P<architecture>x86_64|arm64):(?P<version>\d+)$"
)


@dataclass(frozen=True, slots=True)
class PowertoolsLayer:
    arn: str
    region: str
    python: str  # python311
    architecture: str
    version: int

    @classmethod
    def parse(cls, arn: str) -> PowertoolsLayer:
        match = _LAYER_ARN.match(arn)
        if not match or match["account"] != POWERTOOLS_ACCOUNT:
            raise ValueError(f"not a Powertools for AWS Lambda (Python) v3 layer ARN: {arn}")
        return cls(arn, match["region"], match["python"], match["architecture"], int(match["version"]))


def pinned_powertools(requirements: Path = PROJECT_ROOT / "requirements-dev.txt") -> str:
    """The Powertools version the tests and `make run` use (requirements-dev.txt)."""
    for line in requirements.read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if name.strip().lower() == POWERTOOLS_DISTRIBUTION:
            return version.strip()
    raise LookupError(f"{POWERTOOLS_DISTRIBUTION} is not pinned in {requirements.name}")


def stage_runtime(stage: Stage) -> str:
    runtime = stage.settings.get(RUNTIME_KEY)
    if not isinstance(runtime, str):
        raise KeyError(f"{RUNTIME_KEY} is not set in .chalice/config.json")
    return runtime


def powertools_layer(stage: Stage) -> PowertoolsLayer:
    """The stage's Powertools layer, checked against its runtime and the pinned release."""
    layers = [PowertoolsLayer.parse(arn) for arn in stage.settings.get("layers", []) if "Powertools" in arn]
    if len(layers) != 1:
        raise ValueError(f"stage {stage.name} must list exactly one Powertools layer, found {len(layers)}")
    (layer,) = layers
    runtime = stage_runtime(stage)
    if layer.python != runtime.replace(".", ""):
        raise ValueError(
            f"stage {stage.name}: layer {layer.arn} is for {layer.python}, the runtime is {runtime}"
        )
    architecture = stage.settings.get("lambda_architecture", "x86_64")
    if layer.architecture != architecture:
        raise ValueError(f"stage {stage.name}: layer for {layer.architecture}, functions on {architecture}")
    release = pinned_powertools()
    expected = POWERTOOLS_LAYER_VERSIONS.get(release)
    if expected != layer.version:
        raise ValueError(
            f"stage {stage.name}: layer version {layer.version}, but Powertools {release} "
            f"(requirements-dev.txt) is layer version {expected} (see iot_playground/deploy/lambda_layers.py)"
        )
    return layer


def check_interpreter(stage: Stage, packaging_runtime: str) -> None:
    """Chalice packages for the interpreter it runs in: refuse another version than the stage's."""
    runtime = stage_runtime(stage)
    if packaging_runtime != runtime:
        raise RuntimeError(
            f"stage {stage.name} runs on {runtime} ({RUNTIME_KEY} in .chalice/config.json), but this "
            f"interpreter would package for {packaging_runtime}: package with a {runtime} virtualenv"
        )
