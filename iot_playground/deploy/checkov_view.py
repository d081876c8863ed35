"""The Terraform output as Terraform reads it, in one file, for checkov.

    iot-playground checkov-view dist/dev-terraform dist/dev-tf-view
    .venv-tools/bin/checkov --config-file .checkov.yaml -d dist/dev-tf-view --framework terraform_json

checkov reads `*.tf.json` files one by one: it would check the override file's partial
blocks as resources of their own (a function without its reserved concurrency) and the
originals without their override (roles without their scoped policy). Here each
`*_override.tf.json` block is merged into its original argument by argument, as Terraform
merges override files. Chalice's `terraform` block (version constraints, nothing to check)
is left out: checkov's JSON parser cannot read it and would skip the whole file with it,
functions, API and all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VIEW_FILE = "main.tf.json"


def as_applied(folder: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    # Originals first, then the overrides (Terraform's order).
    files = sorted(folder.glob("*.tf.json"), key=lambda p: (p.name.endswith("_override.tf.json"), p.name))
    for path in files:
        override = path.name.endswith("_override.tf.json")
        for block, body in json.loads(path.read_text()).items():
            if block == "terraform":
                continue
            target = merged.setdefault(block, {})
            if block not in ("resource", "data"):
                target.update(body)
                continue
            for kind, named in body.items():
                for name, arguments in named.items():
                    existing = target.setdefault(kind, {}).setdefault(name, {})
                    if override and not existing:
                        raise ValueError(f"{path.name} overrides {kind}.{name}, which no file defines")
                    if existing and not override:
                        raise ValueError(f"{kind}.{name} is defined twice")
                    existing.update(arguments)
    return merged


def write_view(folder: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / VIEW_FILE).write_text(json.dumps(as_applied(folder), indent=2) + "\n")
    return out / VIEW_FILE
