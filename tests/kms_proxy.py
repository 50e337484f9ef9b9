"""A loopback HTTP proxy in front of the KMS emulator that can hold chosen requests.

The operator signs for the proxy's address; the proxy forwards every request unchanged (Host
header included, so the emulator verifies the signature as sent) and the answer back. A test asks
it to hold the next request of one action for one secret, changes the world while that request
waits (an edit, a delete + re-create, a rival promotion), and then lets it go: no timing, no sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


class Hold:
    """One request to hold: the first that matches, after the hold was set."""

    def __init__(self, action: str, secret: str) -> None:
        self.action, self.secret = action, secret
        self.arrived = threading.Event()
        self.released = threading.Event()

    def matches(self, action: str, secret: str) -> bool:
        return not self.arrived.is_set() and action == self.action and secret == self.secret

    def wait_arrived(self, timeout: float = 30) -> None:
        if not self.arrived.wait(timeout):
            raise AssertionError(
                f"timed out after {timeout:.0f}s: no {self.action} for {self.secret} reached the proxy"
            )

    def release(self) -> None:
        self.released.set()


class HoldingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.holds: list[Hold] = []
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (action, SecretName) of every request forwarded
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the operator's client expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = self.headers.get("x-acs-action", "")
                secret = dict(parse_qsl(body.decode("utf-8", "replace"))).get("SecretName", "")
                with proxy.lock:
                    hold = next((h for h in proxy.holds if h.matches(action, secret)), None)
                    if hold is not None:
                        hold.arrived.set()
                    proxy.seen.append((action, secret))
                if hold is not None:
                    hold.released.wait(60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                with httpx.Client(timeout=30) as client:
                    answer = client.post(proxy.upstream + self.path, content=body, headers=headers)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hold(self, action: str, secret: str) -> Hold:
        hold = Hold(action, secret)
        with self.lock:
            self.holds.append(hold)
        return hold

    def close(self) -> None:
        for hold in self.holds:
            hold.release()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def holding_proxy(upstream: str) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
