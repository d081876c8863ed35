"""`make package` / `make package-tf`: `chalice package` with cfn_template.py's merge template, or
Terraform with tf_template.py's files, with no AWS account. Powertools is AWS's public layer of the pinned
release (`aws ssm get-parameter --name /aws/service/powertools/python/x86_64/python3.11/3.37.0`: 40);
Chalice 1.34 packages for its own interpreter, which must be `lambda_runtime`.
"""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from iot_playground.common.stages import PROJECT_ROOT, Stage, load_config
from iot_playground.deploy.cfn_template import merge_template
from iot_playground.deploy.tf_template import files

POWERTOOLS_LAYER_VERSIONS = {"3.37.0": 40}  # release -> AWS's layer version
POWERTOOLS = "017000801446:layer:AWSLambdaPowertoolsPythonV3"  # AWS's account and layer name
_LAYER = re.compile(rf"^arn:aws:lambda:[\w-]+:{POWERTOOLS}-(\w+)-(\w+):(\d+)$")
TASK_ROOT = "/var/task"  # where Lambda unpacks the code: the file names tracebacks show


def stage_runtime(stage: Stage) -> str:
    return str(stage.settings["lambda_runtime"])


def pinned_powertools(requirements: Path = PROJECT_ROOT / "requirements-dev.txt") -> str:
    pins = dict(line.split("==") for line in requirements.read_text().split() if "==" in line)
    return pins["aws-lambda-powertools"]


def powertools_layer(stage: Stage) -> str:
    """The stage's one Powertools layer, checked against its runtime, architecture and the pin."""
    layers = [arn for arn in stage.settings.get("layers", []) if "Powertools" in arn]
    match = _LAYER.match(layers[0]) if len(layers) == 1 else None
    wanted = (stage_runtime(stage).replace(".", ""), stage.settings.get("lambda_architecture", "x86_64"))
    version = POWERTOOLS_LAYER_VERSIONS.get(pinned_powertools())
    if not match or match.groups() != (*wanted, str(version)):
        raise ValueError(f"stage {stage.name}: {layers}, not Powertools {pinned_powertools()}'s for {wanted}")
    return str(layers[0])


def check_interpreter(stage: Stage, packaging_runtime: str) -> None:
    if packaging_runtime != (runtime := stage_runtime(stage)):
        raise RuntimeError(f"stage {stage.name} runs {runtime}: package with a {runtime} virtualenv")


def _chalice_package(project: Path, stage: str, out: Path, *extra: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # Chalice names ARNs with a region even though it calls nothing; a deployed stage refuses to
    # start without its secret, which the templates take as a parameter.
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
    env.setdefault("PAGINATION_TOKEN_SECRET", "placeholder-while-packaging-not-deployed")
    chalice = str(Path(sys.executable).parent / "chalice")
    command = [chalice, "--project-dir", str(project), "package", "--stage", stage, *extra, str(out)]
    subprocess.run(command, check=True, env=env, cwd=project)


def _json(path: Path, document: dict[str, Any] | None = None) -> dict[str, Any]:
    if document is not None:
        path.write_text(json.dumps(document, indent=2) + "\n")
    return dict(json.loads(path.read_text()))


def package_sizes(archive: Path) -> tuple[int, int]:
    """deployment.zip's size, and what it unpacks to (Lambda's limit is 250 MB)."""
    with zipfile.ZipFile(archive) as bundle:
        return archive.stat().st_size, sum(entry.file_size for entry in bundle.infolist())


def precompile(archive: Path) -> None:
    """deployment.zip with the bytecode of every module, as unchecked-hash .pyc (PEP 552): Lambda's
    /var/task is read-only, so without it every cold start compiles the app, Chalice and msgspec
    again (about 40 ms). This interpreter is the runtime's version (`check_interpreter`)."""
    with tempfile.TemporaryDirectory(prefix="precompile-") as scratch:
        root = Path(scratch)
        with zipfile.ZipFile(archive) as bundle:
            entries = [e for e in bundle.infolist() if "__pycache__/" not in e.filename and not e.is_dir()]
            bundle.extractall(root, entries)
        mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
        if not compileall.compile_dir(root, ddir=TASK_ROOT, quiet=1, invalidation_mode=mode):
            raise RuntimeError(f"{archive.name}: a module does not compile")
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for entry in entries:
                bundle.writestr(entry, (root / entry.filename).read_bytes())
            for path in sorted(root.rglob("*.pyc")):
                info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
                bundle.writestr(info, path.read_bytes())


def package_cloudformation(stage_name: str, out: Path) -> Path:
    stage = Stage.load(stage_name)
    with tempfile.TemporaryDirectory(prefix="merge-") as scratch:
        merge = Path(scratch) / "merge-template.json"
        _json(merge, merge_template(stage))
        _chalice_package(PROJECT_ROOT, stage_name, out, "--merge-template", str(merge))
        shutil.copy(merge, out / merge.name)
    precompile(out / "deployment.zip")
    # A merge-template entry for an id Chalice did not generate would become a resource without a type.
    if untyped := sorted(k for k, r in _json(out / "sam.json")["Resources"].items() if "Type" not in r):
        raise RuntimeError(f"merge template patches resources Chalice did not generate: {', '.join(untyped)}")
    return out / "sam.json"


def package_terraform(stage_name: str, out: Path) -> Path:
    """Chalice's Terraform has no log groups: its copy of config.json leaves the retention to ours."""
    stage = Stage.load(stage_name)
    with tempfile.TemporaryDirectory(prefix="chalice-tf-") as scratch:
        project = Path(scratch)
        skip = shutil.ignore_patterns("__pycache__", "deployed")
        for name in ("app.py", "requirements.txt", "chalicelib", "vendor", ".chalice"):
            if (source := PROJECT_ROOT / name).is_dir():
                shutil.copytree(source, project / name, ignore=skip)
            elif source.exists():
                shutil.copy(source, project / name)
        config = load_config()
        stage_config = config["stages"][stage_name]
        for block in [stage_config, *stage_config.get("lambda_functions", {}).values()]:
            block.pop("log_retention_in_days", None)
        _json(project / ".chalice" / "config.json", config)
        _chalice_package(project, stage_name, out, "--pkg-format", "terraform")
    precompile(out / "deployment.zip")
    for name, document in files(stage, _json(out / "chalice.tf.json")).items():
        _json(out / name, document)
    return out / "chalice.tf.json"


def package(stage: str, pkg_format: str = "cloudformation", out: Path | None = None) -> int:
    """`iot-playground package`: package a stage for CloudFormation or Terraform; print where and how big."""
    from chalice.config import Config

    check_interpreter(Stage.load(stage), Config().lambda_python_version)
    powertools_layer(Stage.load(stage))
    suffix = "" if pkg_format == "cloudformation" else "-terraform"
    out = (out or PROJECT_ROOT / "dist" / f"{stage}{suffix}").resolve()
    written = (package_cloudformation if pkg_format == "cloudformation" else package_terraform)(stage, out)
    zipped, unzipped = package_sizes(out / "deployment.zip")
    print(f"{written}\ndeployment.zip: {zipped / 1024:.0f} KiB ({unzipped / 1024:.0f} KiB unpacked)")
    return 0
