"""CORS and the JSON-only POST rule in a real browser (headless Chromium) against `make run`.

Two small pages are served from two loopback origins (two ports: two origins). The API's
CORS_ORIGIN allows only the first. That page runs the frontend's flow with `fetch`
(can-start, start with X-User, a reading with X-Run-Id, finish) and reports success. The
other page's requests are refused by the browser ("TypeError: Failed to fetch": its
preflights get no Access-Control-Allow-Origin), and its "simple" cross-site POSTs
(`text/plain`, `mode: "no-cors"`: sent without a preflight) are refused by the API with a
415, so nothing on the server changes: checked through the API afterwards.

Once with a single allowed origin (the preflight answered as API Gateway's mock answers it)
and once with a list (the preflight answered by the app). Needs Debian's `chromium` and
`chromium-driver` (`.ci/run` installs them); without them the test is skipped locally and
fails in CI.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser import wait_for
from tests.conftest import LocalStack
from tests.helpers import http

pytestmark = pytest.mark.e2e

USER = "cors-browser"
INTRUDER = "cors-intruder"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>CORS probe</title></head>
<body><pre id="result"></pre>
<script>
const params = new URLSearchParams(location.search);
const api = params.get("api");

async function call(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(api + path, init);
  return { status: response.status, body: await response.json() };
}

async function attempt(what, request) {
  try {
    const answer = await request();
    return { what, outcome: "answered", status: answer.status, type: answer.type };
  } catch (error) {
    return { what, outcome: "refused", error: `${error.name}: ${error.message}` };
  }
}

// The frontend's flow: every step must succeed.
async function frontendFlow() {
  const steps = [];
  const can = await call("GET", "/api/runs/can-start");
  steps.push(["can-start", can.status, can.body.canStart]);
  const run = await call("POST", "/api/runs/start",
    { sensorIds: ["sensor-1", "sensor-2"], duration: 60, interval: 1 }, { "X-User": "__USER__" });
  steps.push(["start", run.status]);
  const runId = run.body.runId;
  const reading = await call("POST", "/api/sensors/data",
    { sensorId: "sensor-1", reading: 27.4, type: "temperature" },
    { "X-User": "__USER__", "X-Run-Id": runId });
  steps.push(["reading", reading.status]);
  const finish = await call("POST", `/api/runs/${runId}/finish`,
    { status: "SUCCESS", message: "Simulation completed successfully" });
  steps.push(["finish", finish.status, finish.body.status]);
  const ok = can.status === 200 && run.status === 201 && reading.status === 201
    && finish.status === 200 && finish.body.status === "SUCCESS";
  return { ok, runId, steps };
}

// From an origin the API does not allow, against a run someone else started.
async function intrusion() {
  const runId = params.get("runId");
  const attempts = [
    await attempt("can-start", () => fetch(api + "/api/runs/can-start")),
    await attempt("start", () => call("POST", "/api/runs/start",
      { sensorIds: ["sensor-1"], duration: 60, interval: 1 }, { "X-User": "__INTRUDER__" })),
    await attempt("reading", () => call("POST", "/api/sensors/data",
      { sensorId: "sensor-1", reading: 99.9, type: "temperature" },
      { "X-User": "__INTRUDER__", "X-Run-Id": runId })),
    await attempt("finish", () => call("POST", `/api/runs/${runId}/finish`, { status: "FAILED" })),
    // "Simple" requests: no preflight, sent whatever CORS says; the API must refuse them.
    await attempt("simple start", () => fetch(api + "/api/runs/start", { method: "POST", mode: "no-cors",
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ sensorIds: ["sensor-1"], duration: 60, interval: 1 }) })),
    await attempt("simple reading", () => fetch(api + "/api/sensors/data", {
      method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ sensorId: "sensor-1", reading: 99.9, runId }) })),
    await attempt("simple finish", () => fetch(api + `/api/runs/${runId}/finish`, { method: "POST",
      mode: "no-cors", body: new URLSearchParams({ status: "FAILED" }) })),
  ];
  return { ok: true, attempts };
}

(params.get("mode") === "intrusion" ? intrusion() : frontendFlow())
  .catch((error) => ({ ok: false, error: `${error.name}: ${error.message}` }))
  .then((result) => { document.getElementById("result").textContent = JSON.stringify(result); });
</script></body></html>
""".replace("__USER__", USER).replace("__INTRUDER__", INTRUDER)


class PageServer:
    """The page above, served on 127.0.0.1 on a port of its own: an origin of its own."""

    def __init__(self) -> None:
        body = PAGE.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def run_page(browser: Any, url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    browser.get(url)
    text = wait_for(lambda: browser.find_element(By.ID, "result").text, "the page's result", timeout=30)
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.mark.parametrize("listed", [False, True], ids=["one-origin", "origin-list"])
def test_only_the_allowed_origin_can_call_the_api_from_a_browser(browser, listed):
    with PageServer() as allowed, PageServer() as other:
        # With a list, the other entry is an origin no page here uses.
        setting = f"https://frontend.example.com,{allowed.origin}" if listed else allowed.origin
        with LocalStack(CORS_ORIGIN=setting) as stack:
            api = stack.base_url
            flow = run_page(browser, f"{allowed.origin}/?api={quote(api)}")
            assert flow["ok"], flow
            assert [step[:2] for step in flow["steps"]] == [
                ["can-start", 200],
                ["start", 201],
                ["reading", 201],
                ["finish", 200],
            ]
            problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
            assert problems == [], problems
            run = http("GET", f"{api}/api/runs/{flow['runId']}")[1]
            assert (run["username"], run["status"]) == (USER, "SUCCESS")
            assert http("GET", f"{api}/api/sensors/data?runId={flow['runId']}")[1]["count"] == 1

            # Another origin, against a run that is RUNNING.
            status, victim, _ = http(
                "POST", f"{api}/api/runs/start", {"sensorIds": ["sensor-1"], "duration": 60, "interval": 1}
            )
            assert status == 201
            url = f"{other.origin}/?api={quote(api)}&mode=intrusion&runId={victim['runId']}"
            intrusion = run_page(browser, url)
            outcomes = {a["what"]: a for a in intrusion["attempts"]}
            for what in ("can-start", "start", "reading", "finish"):
                assert outcomes[what]["outcome"] == "refused", outcomes[what]
                assert outcomes[what]["error"] == "TypeError: Failed to fetch", outcomes[what]
            for what in ("simple start", "simple reading", "simple finish"):
                # Sent without a preflight; the answer is opaque to the page, and a 415 on the server.
                assert outcomes[what] == {"what": what, "outcome": "answered", "status": 0, "type": "opaque"}
            refusals = [e["message"] for e in browser.get_log("browser") if "CORS policy" in e["message"]]
            assert len(refusals) >= 4, refusals
            # The three simple POSTs reached the API, which refused them (chalice local's access log).
            assert stack.log().count('HTTP/1.1" 415 -') == 3, stack.log()[-3000:]

            # Nothing changed: no run of the intruder's, the victim's run still RUNNING without readings.
            assert http("GET", f"{api}/api/runs?user={INTRUDER}")[1]["count"] == 0
            assert [r["id"] for r in http("GET", f"{api}/api/runs/running")[1]] == [victim["runId"]]
            assert http("GET", f"{api}/api/runs/{victim['runId']}")[1]["status"] == "RUNNING"
            assert http("GET", f"{api}/api/sensors/data?runId={victim['runId']}")[1]["count"] == 0
            assert http("GET", f"{api}/api/sensors/data?sensorId=sensor-1")[1]["count"] == 1
            http("POST", f"{api}/api/runs/{victim['runId']}/finish", {"status": "SUCCESS"})
