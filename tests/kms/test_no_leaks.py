"""AccessKeySecret and SecurityToken never reach logs or exception text, success or failure."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import pytest

from secretstage.kms import ACS3_HMAC_SHA256, HMAC_SHA1, Credentials, KmsClient, KmsError, StaticProvider
from tests.conftest import ACCESS_KEY_SECRET, RunningEmulator
from tests.support import SECRET_CANARIES

TOKEN = "CAIS-leak-canary-token-7f3a9b"
SECRET_CANARIES.add(TOKEN)


@pytest.mark.parametrize("signature", [ACS3_HMAC_SHA256, HMAC_SHA1])
async def test_no_secret_in_logs_or_errors(
    kms: RunningEmulator,
    client_factory: Callable[..., KmsClient],
    seeded: str,
    caplog: pytest.LogCaptureFixture,
    signature: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    kms.emulator.add_key("STS.leaktest", ACCESS_KEY_SECRET + "-sts", TOKEN)
    good = client_factory(
        credentials=StaticProvider(Credentials("STS.leaktest", ACCESS_KEY_SECRET + "-sts", TOKEN)), signature=signature
    )
    wrong = client_factory(
        credentials=StaticProvider(Credentials("STS.leaktest", "wrong-secret-x", TOKEN)), signature=signature
    )
    await good.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    texts = []
    for client in (good, wrong):
        with pytest.raises(KmsError) as err:
            await client.update_secret_version_stage(
                seeded, "ACSCurrent", move_to_version="v1", remove_from_version="v9"
            )
        texts += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    assert "SignatureDoesNotMatch" in texts[3]
    everything = caplog.text + "\n".join(texts)
    assert "ACS3" in caplog.text or signature == HMAC_SHA1  # debug logging really ran
    for secret in (ACCESS_KEY_SECRET, TOKEN, "wrong-secret-x"):
        assert secret not in everything
