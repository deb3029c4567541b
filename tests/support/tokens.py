"""OIDC ID tokens as Cloud Tasks makes them, signed with a key made for the test run,
and the certificate endpoint that publishes that key, served over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from django_q_cloudtasks.emulator.identity import self_signed_certificate

SERVICE_ACCOUNT = "tasks@test-project.iam.gserviceaccount.com"
AUDIENCE = "https://tasks.example.com"
ISSUER = "https://accounts.google.com"


@dataclass
class SigningKey:
    kid: str
    private_pem: bytes
    certificate_pem: bytes

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(
            kid=kid,
            private_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            certificate_pem=self_signed_certificate(key, kid).encode(),
        )

    def token(self, **claims: Any) -> str:
        """A token like Cloud Tasks sends; keyword arguments replace claims (None drops one)."""
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.kid)
        return jwt.encode(signer, valid_claims(**claims)).decode()


def valid_claims(**claims: Any) -> dict[str, Any]:
    """The claims of a token Cloud Tasks sends; keyword arguments replace them (None drops one)."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "email": SERVICE_ACCOUNT,
        "email_verified": True,
        "sub": "1234567890",
        "iat": now,
        "exp": now + 3600,
    }
    payload.update(claims)
    return {k: v for k, v in payload.items() if v is not None}


def forged_token(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT put together by hand: ``sign(signing_input) -> bytes`` makes its signature."""

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{encode(json.dumps(header).encode())}.{encode(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{encode(signature)}"


@dataclass
class CertsServer:
    """Serves ``{kid: certificate PEM}`` like Google's v1 certs endpoint, and counts fetches.

    ``max_age`` is the Cache-Control max-age it sends; ``status`` other than 200 makes it
    fail each fetch with that status, as an endpoint in trouble does; ``body`` replaces the
    certificates, as a captive portal or a proxy's error page does.
    """

    keys: list[SigningKey]
    fetches: int = 0
    max_age: int = 3600
    status: int = 200
    body: bytes | None = None
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/oauth2/v1/certs"

    def start(self) -> CertsServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = (
                    owner.body
                    or json.dumps({k.kid: k.certificate_pem.decode() for k in owner.keys}).encode()
                )
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", f"public, max-age={owner.max_age}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
