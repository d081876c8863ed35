from __future__ import annotations

import json


def test_health(client):
    response = client.http.get("/api/health")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok", "stage": "test", "version": "0.1.0"}
