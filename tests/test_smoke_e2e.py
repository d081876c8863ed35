from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.e2e


def test_health_over_http(local_stack):
    with urllib.request.urlopen(f"{local_stack.base_url}/api/health") as response:
        assert json.loads(response.read()) == {"status": "ok", "stage": "local", "version": "0.1.0"}
