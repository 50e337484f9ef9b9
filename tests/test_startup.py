"""What the operator loads before kopf starts, so that the first promotion does not stall the event loop.

kubernetes.client resolves each API class on first attribute access (CoreV1Api alone costs about 1 s
of CPU); resolved inside a handler, that second blocks every other promotion. The hot path's calls
are on httpx (kubehttp); the synchronous client is left to afterSuccess. Checked in a fresh
interpreter, as `secretstage run` starts: importing the handlers (which the runner does before kopf
starts) must already have loaded the API modules afterSuccess uses.
"""

from __future__ import annotations

import subprocess
import sys

HOT_PATH_APIS = ("custom_objects_api", "apps_v1_api")


def test_the_handlers_load_the_kubernetes_apis_they_use_at_import() -> None:
    probe = (
        "import sys; import secretstage.handlers; "
        f"print(*[m for m in {HOT_PATH_APIS!r} if 'kubernetes.client.api.' + m not in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == [], f"loaded lazily, on the event loop: {result.stdout.split()}"
