"""A consumer of a Secrets Manager secret and the "database" it logs in to, for the gated-promotion node tests.

    python3 app.py consumer   read the secret's ACSCurrent at start (as applications do: once, then
                              cached), log in to the database with it, serve /healthz while the login
                              holds; a refused login exits 1, so a bad value shows as a crash loop
    python3 app.py smoke      one read and one login, exit 0 or 1: the gate's smoke Job
    python3 app.py database   accept a login whose password's SHA-256 is in ACCEPT_SHA256 (comma-separated)

The secret is read with GetSecretValue by stage through the signed KMS client the image already has
(secretstage.kms). Neither side ever prints a password: the consumer logs the VersionId it runs on,
the database keeps only hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import sys
import threading
import time

import httpx

from secretstage.kms.client import KmsClient
from secretstage.kms.credentials import Credentials, StaticProvider

LOGIN_EVERY = 2.0  # seconds between re-logins (a pool reconnecting with the cached password)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


async def read_secret() -> tuple[str, str]:
    """The secret's value and VersionId at VERSION_STAGE (default ACSCurrent)."""
    credentials = StaticProvider(
        Credentials(
            os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
            os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
            os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None,
        )
    )
    async with (
        httpx.AsyncClient(verify=os.environ.get("KMS_CA_FILE") or True, timeout=10) as http,
        KmsClient(endpoint=os.environ["KMS_ENDPOINT"], credentials=credentials, http=http) as client,
    ):
        value = await client.get_secret_value(
            os.environ["SECRET_NAME"], version_stage=os.environ.get("VERSION_STAGE", "ACSCurrent")
        )
    return value.secret_data, value.version_id


def login(password: str) -> bool:
    """True if the database accepts the password, False if it refuses it (403); anything else raises."""
    answer = httpx.post(os.environ["DATABASE_URL"] + "/login", content=password.encode(), timeout=5)
    if answer.status_code == 403:
        return False
    answer.raise_for_status()
    return True


class Health(http.server.BaseHTTPRequestHandler):
    version_id = ""

    def do_GET(self) -> None:
        body = f"ok {self.version_id}\n".encode()
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # probes every second: not worth a line
        pass


def consumer() -> int:
    password, version_id = asyncio.run(read_secret())
    if not login(password):
        log(f"the database refused the password of version {version_id}")
        return 1
    log(f"logged in with version {version_id}")
    Health.version_id = version_id
    server = http.server.ThreadingHTTPServer(("", 8080), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        time.sleep(LOGIN_EVERY)
        if not login(password):
            log(f"the database no longer accepts the password of version {version_id}")
            return 1


def smoke() -> int:
    password, version_id = asyncio.run(read_secret())
    ok = login(password)
    log(f"login-check with version {version_id}: {'ok' if ok else 'refused'}")
    return 0 if ok else 1


class Database(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        password = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        accepted = set(filter(None, os.environ.get("ACCEPT_SHA256", "").split(",")))
        ok = hashlib.sha256(password).hexdigest() in accepted
        self.send_response(200 if ok and self.path == "/login" else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def database() -> int:
    log(f"accepting {len(os.environ.get('ACCEPT_SHA256', '').split(','))} password hashes")
    http.server.ThreadingHTTPServer(("", 8000), Database).serve_forever()
    return 0


if __name__ == "__main__":
    modes = {"consumer": consumer, "smoke": smoke, "database": database}
    if len(sys.argv) != 2 or sys.argv[1] not in modes:
        sys.exit(f"usage: app.py {'|'.join(modes)}")
    sys.exit(modes[sys.argv[1]]())
