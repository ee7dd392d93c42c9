"""SigV4 failures answer 403 with AWS's error codes; the credentials file is the admin's key."""

from __future__ import annotations

import datetime
import http.client
import json
import stat
import urllib.parse
from typing import Any

import botocore.auth  # type: ignore[import-untyped]
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from test_compat_support import REGION, Server, client_for, error_of

LIST_PATH = "/2015-03-31/functions"  # the path botocore sends for ListFunctions


def _signed(server: Server, method: str, path: str, body: bytes = b"", *,
            secret: str | None = None) -> AWSRequest:
    key, real_secret = server.credentials()
    request = AWSRequest(method=method, url=f"{server.endpoint}{path}", data=body,
                         headers={"Content-Type": "application/json"} if body else {})
    botocore.auth.SigV4Auth(Credentials(key, secret or real_secret), "lambda",
                            REGION).add_auth(request)
    return request


def _send(server: Server, method: str, path: str, headers: dict[str, str],
          body: bytes = b"") -> tuple[int, str, dict[str, Any]]:
    """(status, error code, JSON body) of a raw request, the error code read as botocore does."""
    netloc = urllib.parse.urlsplit(server.endpoint).netloc
    conn = http.client.HTTPConnection(netloc, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        error_type = resp.getheader("x-amzn-ErrorType") or ""
    finally:
        conn.close()
    payload: dict[str, Any] = json.loads(raw) if raw else {}
    code = error_type.split(":")[0] or str(payload.get("__type", payload.get("code", "")))
    return resp.status, code.rsplit("#", 1)[-1], payload


def _message(payload: dict[str, Any]) -> str:
    return str(payload.get("message", payload.get("Message", "")))


def test_credentials_file_is_a_private_default_profile(server: Server) -> None:
    mode = stat.S_IMODE(server.credentials_path.stat().st_mode)
    assert mode == 0o600
    key, secret = server.credentials()
    assert key and secret and key != secret


def test_health_answers_without_credentials(server: Server) -> None:
    assert _send(server, "GET", "/_lamina/health", {})[0] == 200


def test_a_correctly_signed_raw_request_is_accepted(server: Server) -> None:
    request = _signed(server, "GET", LIST_PATH)
    status, _, payload = _send(server, "GET", LIST_PATH, dict(request.headers.items()))
    assert status == 200
    assert isinstance(payload["Functions"], list)


def test_unsigned_request_is_refused(server: Server) -> None:
    status, code, _ = _send(server, "GET", LIST_PATH, {})
    assert (status, code) == (403, "MissingAuthenticationTokenException")

    lam = client_for(server, signature_version=UNSIGNED)
    with pytest.raises(ClientError) as exc:
        lam.list_functions()
    assert error_of(exc)[:2] == ("MissingAuthenticationTokenException", 403)


def test_unknown_access_key_is_refused(server: Server) -> None:
    lam = client_for(server, access_key="AKIAIOSFODNN7EXAMPLE")
    with pytest.raises(ClientError) as exc:
        lam.list_functions()
    assert error_of(exc) == ("UnrecognizedClientException", 403,
                             "The security token included in the request is invalid.")


def test_wrong_secret_is_a_bad_signature(server: Server) -> None:
    lam = client_for(server, secret_key="not-the-secret-at-all-0123456789abcdefghij")
    with pytest.raises(ClientError) as exc:
        lam.list_functions()
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("The request signature we calculated does not match the signature "
                              "you provided. Check your AWS Secret Access Key and signing method.")


def test_body_changed_after_signing_is_a_bad_signature(server: Server) -> None:
    path = "/2015-03-31/functions/nope/configuration"
    body = json.dumps({"Description": "signed"}).encode()
    request = _signed(server, "PUT", path, body)
    tampered = json.dumps({"Description": "tamper"}).encode()
    status, code, _ = _send(server, "PUT", path, dict(request.headers.items()), tampered)
    assert (status, code) == (403, "InvalidSignatureException")


def test_path_changed_after_signing_is_a_bad_signature(server: Server) -> None:
    request = _signed(server, "GET", "/2015-03-31/functions/a/configuration")
    status, code, _ = _send(server, "GET", "/2015-03-31/functions/b/configuration",
                            dict(request.headers.items()))
    assert (status, code) == (403, "InvalidSignatureException")


def _utcnow() -> datetime.datetime:
    """Naive UTC, the form botocore's signer formats into X-Amz-Date."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _signed_at(monkeypatch: pytest.MonkeyPatch, server: Server,
               moment: datetime.datetime) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: moment)
    return dict(_signed(server, "GET", LIST_PATH).headers.items())


def test_expired_signature_is_refused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _utcnow() - datetime.timedelta(hours=1)
    status, code, payload = _send(server, "GET", LIST_PATH, _signed_at(monkeypatch, server, old))
    assert (status, code) == (403, "InvalidSignatureException")
    assert _message(payload).startswith("Signature expired: ")


def test_future_signature_is_refused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    ahead = _utcnow() + datetime.timedelta(hours=1)
    status, code, payload = _send(server, "GET", LIST_PATH, _signed_at(monkeypatch, server, ahead))
    assert (status, code) == (403, "InvalidSignatureException")
    assert _message(payload).startswith("Signature not yet current: ")


def test_signature_for_another_service_scope_is_refused(server: Server) -> None:
    key, secret = server.credentials()
    request = AWSRequest(method="GET", url=f"{server.endpoint}{LIST_PATH}")
    botocore.auth.SigV4Auth(Credentials(key, secret), "lambda", "eu-central-1").add_auth(request)
    status, code, _ = _send(server, "GET", LIST_PATH, dict(request.headers.items()))
    assert (status, code) == (403, "InvalidSignatureException")
