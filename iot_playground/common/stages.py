"""The stages of `.chalice/config.json`, read the way Chalice reads them: the one place where a
stage is described."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.settings import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHALICE_DIR = PROJECT_ROOT / ".chalice"
CONFIG_PATH = CHALICE_DIR / "config.json"
# Stages that deploy to AWS; `local` only serves `make run` and the tests.
DEPLOY_STAGES = ("dev", "prod")
# Not a Chalice setting: read by the packaging tools for the API Gateway stage.
THROTTLING_KEY = "api_gateway_throttling"


def load_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(CONFIG_PATH.read_text())
    return config


def stage_environment(stage: str, config: dict[str, Any] | None = None) -> dict[str, str]:
    config = config if config is not None else load_config()
    return {
        **config.get("environment_variables", {}),
        **config["stages"][stage].get("environment_variables", {}),
    }


def settings_for(env: dict[str, str]) -> Settings:
    """The app's Settings as a Lambda with exactly these variables would load them."""
    previous = dict(os.environ)
    # A deployed stage takes its secret from the template's parameter, not from config.json.
    os.environ.update({"PAGINATION_TOKEN_SECRET": "given-by-the-deployment", **env})
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(previous)


@dataclass(frozen=True, slots=True)
class Throttling:
    rate_limit: float
    burst_limit: int


@dataclass(frozen=True, slots=True)
class Stage:
    """One deployable stage: Chalice's lookup order is stage over top level."""

    name: str
    app_name: str
    settings: dict[str, Any]
    function_settings: dict[str, dict[str, Any]]
    environment: dict[str, str]

    @classmethod
    def load(cls, name: str, config: dict[str, Any] | None = None) -> Stage:
        config = config if config is not None else load_config()
        if name not in config["stages"]:
            raise KeyError(f"no stage {name!r} in {CONFIG_PATH.name}")
        stage_block = config["stages"][name]
        merged = {k: v for k, v in config.items() if k not in ("stages", "environment_variables")}
        merged.update({k: v for k, v in stage_block.items() if k != "environment_variables"})
        functions = {**config.get("lambda_functions", {}), **stage_block.get("lambda_functions", {})}
        return cls(name, config["app_name"], merged, functions, stage_environment(name, config))

    @property
    def app_settings(self) -> Settings:
        return settings_for(self.environment)

    @property
    def xray(self) -> bool:
        return bool(self.settings.get("xray", False))

    @property
    def api_stage_name(self) -> str:
        return str(self.settings.get("api_gateway_stage", "api"))

    @property
    def log_retention_days(self) -> int | None:
        return self.settings.get("log_retention_in_days")

    @property
    def throttling(self) -> Throttling:
        block = self.settings.get(THROTTLING_KEY)
        if not block:
            raise KeyError(f"stage {self.name!r} sets no {THROTTLING_KEY}")
        return Throttling(rate_limit=float(block["rate_limit"]), burst_limit=int(block["burst_limit"]))

    @property
    def policy_file(self) -> Path:
        return CHALICE_DIR / str(self.settings["iam_policy_file"])

    def policy_files(self) -> dict[str, list[str]]:
        """Each IAM policy file and the functions whose role it is (a function's own over the stage's)."""
        found: dict[str, list[str]] = {}
        for function in self.function_names():
            own = self.function_settings.get(function, {}).get("iam_policy_file")
            found.setdefault(str(own or self.settings["iam_policy_file"]), []).append(function)
        return found

    def function_names(self) -> dict[str, str]:
        """The Lambda names `chalice deploy` gives each function."""
        prefix = f"{self.app_name}-{self.name}"
        return {"api_handler": prefix, **{name: f"{prefix}-{name}" for name in app_function_names()}}


# Decorators that make a function its own Lambda (the routes share `api_handler`).
_OWN_LAMBDA_DECORATORS = {"schedule", "lambda_function", "on_s3_event", "on_sns_message", "on_sqs_message"}


@functools.cache
def app_function_names(app_path: Path = PROJECT_ROOT / "app.py") -> list[str]:
    """The app's Lambda functions besides the API handler, from app.py's decorators (importing
    app.py would load the app's settings)."""
    import ast

    names = []
    for node in ast.parse(app_path.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(call, ast.Attribute) and call.attr in _OWN_LAMBDA_DECORATORS:
                names.append(node.name)
    return names
