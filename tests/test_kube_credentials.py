"""Credentials Secrets: every way one can be wrong gives a message that names the key, never a value."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from secretstage.kube import CredentialsInvalid, credentials_from_secret, in_cluster_service_account

GOOD = {"AccessKeyId": "LTAI5tExample", "AccessKeySecret": "s3cr3t-value-xyz"}


def secret(data: dict[str, str | bytes], type_: str = "Opaque") -> dict[str, Any]:
    """A Secret as the API server returns it."""
    encoded = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kms"}, "data": encoded, "type": type_}


def test_good_secret_with_trailing_newline() -> None:
    creds = credentials_from_secret(secret({**GOOD, "AccessKeySecret": "s3cr3t-value-xyz\n", "SecurityToken": "CAIS"}))
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (
        "LTAI5tExample",
        "s3cr3t-value-xyz",
        "CAIS",
    )


@pytest.mark.parametrize(
    ("data", "type_", "needle"),
    [
        ({"AccessKeySecret": "x" * 10}, "Opaque", "has no AccessKeyId"),
        ({**GOOD, "AccessKeyId": ""}, "Opaque", "has no AccessKeyId"),
        ({**GOOD, "AccessKeySecret": "   "}, "Opaque", "AccessKeySecret is empty"),
        ({**GOOD, "AccessKeySecret": b"\xff\xfe"}, "Opaque", "AccessKeySecret is not UTF-8"),
        ({**GOOD, "AccessKeySecret": "x" * 5000}, "Opaque", "AccessKeySecret is longer than 256"),
        ({**GOOD, "AccessKeyId": "LTAI 5t"}, "Opaque", "AccessKeyId contains characters"),
        ({**GOOD, "AccessKeySecret": "a\x00b"}, "Opaque", "AccessKeySecret contains characters"),
        ({**GOOD, "SecurityToken": "t" * 20000}, "Opaque", "SecurityToken is longer"),
        (GOOD, "kubernetes.io/tls", "credentials must be in an Opaque Secret"),
    ],
)
def test_invalid(data: dict[str, str | bytes], type_: str, needle: str) -> None:
    with pytest.raises(CredentialsInvalid) as err:
        credentials_from_secret(secret(data, type_))
    assert needle in str(err.value)
    assert "s3cr3t" not in str(err.value)


def test_the_api_server_client_sends_the_kubeconfig_token(tmp_path: Any) -> None:
    """kubehttp authenticates as the kubeconfig says (a token user here; certificates go to TLS)."""
    import httpx
    from kubernetes import client, config

    from secretstage.kubehttp import KubeHttp

    kubeconfig = tmp_path / "config.json"
    kubeconfig.write_text(
        '{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:9",'
        '"insecure-skip-tls-verify":true}}],"users":[{"name":"u","user":{"token":"t0ken"}}],'
        '"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],"current-context":"x"}'
    )
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    kube = KubeHttp.from_configuration(configuration)
    request = kube.client.build_request("GET", "/api")
    flow = kube.client.auth.sync_auth_flow(request)  # type: ignore[union-attr]
    assert next(flow).headers["Authorization"] == "Bearer t0ken"
    assert isinstance(kube.client, httpx.AsyncClient)


def test_the_operators_own_service_account_is_read_from_its_token(tmp_path: Path) -> None:
    claims = {"sub": "system:serviceaccount:secretstage-system:secretstage-operator", "aud": ["https://kubernetes"]}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    token = tmp_path / "token"
    token.write_text(f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln\n")
    assert in_cluster_service_account(str(token)) == ("secretstage-system", "secretstage-operator")
    assert in_cluster_service_account(str(tmp_path / "absent")) is None
    token.write_text("not a token")
    assert in_cluster_service_account(str(token)) is None
