"""spec.gate.analysis with Argo Rollouts' real analysis controller (built from Go modules by
hack/argo-rollouts.sh, run out of cluster with ``--controllers analysis``) on the test control plane.

The metrics use the ``web`` provider against a small HTTP server on loopback that answers what each
test asks (the consumer's health endpoint, in a real rollout): good -> Verified; bad -> RolledBack;
neither -> Inconclusive -> held whatever onFailure says. The ``job`` provider needs a node (its Job
must run): the node tests cover Jobs through spec.gate.jobs.

The AnalysisRun CRDs are installed by this module's fixture; tests/e2e/test_gate.py, which runs
before it, checks the refusal when they are missing.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import (
    EmulatorProcess,
    OperatorProcess,
    Promotions,
    condition,
    spec_for,
    start_analysis_controller,
)
from tests.support import Process

ANSWERS: dict[str, str] = {}  # path -> the "health" the web metric reads


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"health": ANSWERS.get(self.path, "unknown")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def health_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def rollouts(cluster: Cluster, crd: None, workdir: Path) -> Iterator[Process]:
    controller = start_analysis_controller(cluster, workdir)
    yield controller
    controller.stop()


def template(name: str, url: str) -> dict[str, Any]:
    """A web metric: good passes, bad fails, anything else is inconclusive (neither condition holds)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "args": [{"name": "path"}],
            "metrics": [
                {
                    "name": "health",
                    "count": 2,
                    "interval": "1s",
                    "successCondition": "result == 'good'",
                    "failureCondition": "result == 'bad'",
                    "failureLimit": 0,
                    "inconclusiveLimit": 0,
                    "provider": {"web": {"url": url + "{{args.path}}", "jsonPath": "{$.health}"}},
                }
            ],
        },
    }


def gated(emulator: EmulatorProcess, secret: str, path: str, **gate: Any) -> dict[str, Any]:
    analysis = {"templates": [{"templateName": "health"}], "args": [{"name": "path", "value": path}]}
    return spec_for(
        emulator,
        secret,
        moveToVersion="v2",
        precondition={"currentVersion": "v1"},
        gate={"analysis": analysis, "timeout": "2m", **gate},
    )


@pytest.mark.parametrize(
    ("answer", "phase", "reason", "holder"),
    [
        ("good", "Succeeded", "Verified", "v2"),
        ("bad", "Failed", "RolledBack", "v1"),
        ("meh", "Failed", "GateFailed", "v2"),  # Inconclusive: held, though onFailure is Rollback
    ],
)
def test_an_analysis_decides_the_gate(
    rollouts: Process,
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    health_url: str,
    answer: str,
    phase: str,
    reason: str,
    holder: str,
) -> None:
    custom = k8s.CustomObjectsApi(promotions.api.api_client)
    custom.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", ns, "analysistemplates", template("health", health_url)
    )
    path = f"/{uuid.uuid4().hex[:8]}"
    ANSWERS[path] = answer
    secret = emulator.seed(f"analysis-{uuid.uuid4().hex[:6]}", "v1", "v2")
    promotions.create(ns, "p", gated(emulator, secret, path))
    done = promotions.wait_phase(ns, "p", "Succeeded", "Failed", timeout=90)
    succeeded = condition(done, "Succeeded")
    assert (done["status"]["phase"], succeeded["reason"]) == (phase, reason), done["status"]
    assert emulator.holder(secret, "ACSCurrent") == holder
    run = custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "analysisruns", "p-analysis-g1")
    assert run["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]  # deleted with the promotion
    assert run["spec"]["args"] == [{"name": "path", "value": path}]
    expected = {"good": "Successful", "bad": "Failed", "meh": "Inconclusive"}[answer]
    assert run["status"]["phase"] == expected
    (check,) = done["status"]["gate"]["checks"]
    assert (check["kind"], check["name"]) == ("AnalysisRun", "p-analysis-g1")
    if answer == "meh":
        assert "an inconclusive analysis holds" in succeeded["message"]
        assert condition(done, "Verified")["reason"] == "Inconclusive"


def test_a_missing_template_or_arg_moves_nothing(
    rollouts: Process, operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(f"analysis-{uuid.uuid4().hex[:6]}", "v1", "v2")
    spec = gated(emulator, secret, "/x")
    spec["gate"]["analysis"]["templates"] = [{"templateName": "no-such-template"}]
    promotions.create(ns, "missing", spec)
    done = promotions.wait_phase(ns, "missing", "Failed", "Succeeded", timeout=30)
    succeeded = condition(done, "Succeeded")
    assert succeeded["reason"] == "GateCannotRun", done["status"]
    assert (
        f"spec.gate.analysis.templates[0]: AnalysisTemplate no-such-template not found in namespace {ns}"
        in succeeded["message"]
    )
    custom = k8s.CustomObjectsApi(promotions.api.api_client)
    custom.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", ns, "analysistemplates", template("health", "http://127.0.0.1:9")
    )
    no_args = gated(emulator, secret, "/x")
    no_args["gate"]["analysis"].pop("args")
    promotions.create(ns, "no-args", no_args)
    done = promotions.wait_phase(ns, "no-args", "Failed", "Succeeded", timeout=30)
    assert "spec.gate.analysis.args: the templates need 'path'" in condition(done, "Succeeded")["message"]
    assert emulator.moves_for(secret) == 0
