"""`make package` / `make package-tf`: deployable artifacts for a stage, with no AWS account.

    iot-playground package --stage dev                      # dist/dev/
    iot-playground package --stage dev --format terraform   # dist/dev-terraform/

CloudFormation: `chalice package --merge-template` with the template from
`iot_playground.deploy.cfn_template`; the output (sam.json, deployment.zip, and the
merge template for reference) deploys with `aws cloudformation package/deploy`.
Terraform: `chalice package --pkg-format terraform` plus the files from
`iot_playground.deploy.tf_template`; `terraform init && terraform apply` in the folder.
"""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from iot_playground.common.stages import CHALICE_DIR, PROJECT_ROOT, Stage, load_config
from iot_playground.deploy import lambda_layers
from iot_playground.deploy.cfn_template import merge_template
from iot_playground.deploy.tf_template import extras, overrides

CFN_TEMPLATE = "sam.json"
MERGE_TEMPLATE = "merge-template.json"
TF_CHALICE = "chalice.tf.json"
TF_EXTRAS = "iot_playground.tf.json"
TF_OVERRIDES = "iot_playground_override.tf.json"
# What `chalice package` reads from the project; iot_playground/ (tooling) never ships.
_APP_FILES = ("app.py", "requirements.txt")
_APP_DIRS = ("chalicelib", "vendor")
# Chalice needs a region to name ARNs in its templates even though it calls nothing.
_DEFAULT_REGION = "us-east-1"


def default_output(stage: str, pkg_format: str) -> Path:
    return PROJECT_ROOT / "dist" / (stage if pkg_format == "cloudformation" else f"{stage}-terraform")


def _chalice_env() -> dict[str, str]:
    env = dict(os.environ)
    if not (env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")):
        env["AWS_DEFAULT_REGION"] = _DEFAULT_REGION
    # `chalice package` imports the app with the stage's settings, and a deployed stage
    # refuses to start without its secret; the templates take the real one as a parameter.
    env.setdefault("PAGINATION_TOKEN_SECRET", "placeholder-while-packaging-not-deployed")
    return env


def _chalice_package(project_dir: Path, stage: str, out: Path, *extra: str) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chalice = str(Path(sys.executable).parent / "chalice")
    command = [chalice, "--project-dir", str(project_dir), "package", "--stage", stage, *extra, str(out)]
    subprocess.run(command, check=True, env=_chalice_env(), cwd=project_dir)


def _read(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def check_stage(stage: Stage) -> None:
    """Runtime and Powertools layer agree with this interpreter and the pinned release."""
    from chalice.config import Config

    lambda_layers.check_interpreter(stage, Config().lambda_python_version)
    lambda_layers.powertools_layer(stage)


def package_sizes(archive: Path) -> tuple[int, int]:
    """deployment.zip's size, and the size of what it unpacks to (Lambda's limit is 250 MB)."""
    with zipfile.ZipFile(archive) as bundle:
        return archive.stat().st_size, sum(entry.file_size for entry in bundle.infolist())


# Where Lambda unpacks a function's code: the file names tracebacks show.
TASK_ROOT = "/var/task"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def precompile(archive: Path) -> None:
    """Rewrite deployment.zip with the bytecode of every module in it, for its runtime.

    Lambda's /var/task is read-only, so Python cannot cache what it compiles there: every
    cold start would compile app.py, chalicelib, Chalice and msgspec from source again
    (about 40 ms here). The bytecode is compiled by this interpreter, whose version is the
    runtime's (`check_stage`), as unchecked-hash .pyc files (PEP 552: valid whatever the
    files' timestamps after unzipping). Bytecode left in the project tree is dropped."""
    with tempfile.TemporaryDirectory(prefix="precompile-") as scratch:
        root = Path(scratch)
        with zipfile.ZipFile(archive) as bundle:
            entries = [e for e in bundle.infolist() if "__pycache__/" not in e.filename and not e.is_dir()]
            contents = {entry.filename: bundle.read(entry) for entry in entries}
        for name, data in contents.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        invalidation = py_compile.PycInvalidationMode.UNCHECKED_HASH
        if not compileall.compile_dir(root, ddir=TASK_ROOT, quiet=1, invalidation_mode=invalidation):
            raise RuntimeError(f"{archive.name}: a module does not compile")
        compiled = sorted(path for path in root.rglob("*.pyc"))
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for entry in entries:
                bundle.writestr(entry, contents[entry.filename])
            for path in compiled:
                info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, path.read_bytes())


def package_cloudformation(stage_name: str, out: Path) -> Path:
    stage = Stage.load(stage_name)
    check_stage(stage)
    with tempfile.TemporaryDirectory(prefix="merge-") as scratch:
        merge_path = Path(scratch) / MERGE_TEMPLATE
        _write(merge_path, merge_template(stage))
        _chalice_package(PROJECT_ROOT, stage_name, out, "--merge-template", str(merge_path))
        shutil.copy(merge_path, out / MERGE_TEMPLATE)
    precompile(out / "deployment.zip")
    template = _read(out / CFN_TEMPLATE)
    # A merge-template entry for a logical id Chalice did not generate would
    # silently become a resource without a type: refuse that output.
    untyped = sorted(name for name, resource in template["Resources"].items() if "Type" not in resource)
    if untyped:
        raise RuntimeError(f"merge template patches resources Chalice did not generate: {', '.join(untyped)}")
    return out / CFN_TEMPLATE


def _copy_app(stage_name: str, target: Path) -> None:
    """The app as Chalice packages it, with a config its Terraform output accepts:
    Chalice cannot express log groups in Terraform, so retention moves to our file."""
    for name in _APP_FILES:
        shutil.copy(PROJECT_ROOT / name, target / name)
    for name in _APP_DIRS:
        if (PROJECT_ROOT / name).is_dir():
            shutil.copytree(PROJECT_ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    chalice_dir = target / ".chalice"
    chalice_dir.mkdir()
    config = load_config()
    stage_block = config["stages"][stage_name]
    stage_block.pop("log_retention_in_days", None)
    for function in stage_block.get("lambda_functions", {}).values():
        function.pop("log_retention_in_days", None)
    _write(chalice_dir / "config.json", config)
    for policy in CHALICE_DIR.glob("policy-*.json"):
        shutil.copy(policy, chalice_dir / policy.name)
    if (CHALICE_DIR / "deployments").is_dir():  # Chalice's wheel cache: saves the downloads
        shutil.copytree(CHALICE_DIR / "deployments", chalice_dir / "deployments")


def package_terraform(stage_name: str, out: Path) -> Path:
    stage = Stage.load(stage_name)
    check_stage(stage)
    with tempfile.TemporaryDirectory(prefix="chalice-tf-") as scratch:
        project = Path(scratch)
        _copy_app(stage_name, project)
        _chalice_package(project, stage_name, out, "--pkg-format", "terraform")
    precompile(out / "deployment.zip")
    chalice_tf = _read(out / TF_CHALICE)
    _write(out / TF_EXTRAS, extras(stage, chalice_tf))
    _write(out / TF_OVERRIDES, overrides(stage, chalice_tf))
    return out / TF_CHALICE


def package(stage: str, pkg_format: str = "cloudformation", out: Path | None = None) -> int:
    """`iot-playground package`: package a stage for CloudFormation or Terraform, print where and how big."""
    out = (out or default_output(stage, pkg_format)).resolve()
    build = package_cloudformation if pkg_format == "cloudformation" else package_terraform
    written = build(stage, out)
    zipped, unzipped = package_sizes(out / "deployment.zip")
    print(f"{written.relative_to(Path.cwd()) if written.is_relative_to(Path.cwd()) else written}")
    print(f"deployment.zip: {zipped / 1024:.0f} KiB ({unzipped / 1024:.0f} KiB unpacked)")
    return 0
