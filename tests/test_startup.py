"""What the operator loads before kopf starts, so that no promotion stalls the event loop.

kubernetes.client resolves each API class on first attribute access (CoreV1Api alone costs about 1 s
of CPU, AppsV1Api pulls in the workload models); resolved inside a handler, that second blocks every
other promotion, and loaded at start-up it delays the first promotion and costs ~20 MiB. Promotions
make their Kubernetes calls over httpx (``secretstage.kubehttp``), so no API class of the official
client is needed at all. Checked in a fresh interpreter, as `secretstage run` starts: importing the
handlers (which the runner does before kopf starts) loads none of them.
"""

from __future__ import annotations

import subprocess
import sys


def test_the_handlers_need_no_api_class_of_the_official_client() -> None:
    probe = (
        "import sys; import secretstage.handlers; "
        "print(*sorted(m for m in sys.modules if m.startswith('kubernetes.client.api.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == [], f"loaded by the handlers: {result.stdout.split()}"
