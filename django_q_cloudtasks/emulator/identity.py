"""The emulator's OIDC identity: ID tokens as Google mints them for Cloud Tasks, and the
certificate endpoint that publishes the key, so the receiver verifies tokens with the same
google-auth code as in production. Only the issuer and the certificates URL differ, and
emulator mode points the receiver at them (``conf.emulator_identity``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

TOKEN_LIFETIME = 3600
# Tokens are reused while they have this long left, as Google's own token sources do.
TOKEN_REUSE_MARGIN = 300
CERTS_MAX_AGE = 3600


class Identity:
    """An RSA key that signs ID tokens, with its self-signed certificate."""

    def __init__(self, issuer: str, private_pem: str | None = None) -> None:
        self.issuer = issuer
        if private_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            private_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        self.private_pem = private_pem
        private_key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:40]
        self.certificate_pem = self_signed_certificate(private_key, self.kid)
        self._signer = crypt.RSASigner.from_string(private_pem, key_id=self.kid)  # type: ignore[no-untyped-call]
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def token(self, email: str, audience: str) -> str:
        """An ID token for the service account ``email``, as Cloud Tasks attaches it."""
        now = time.time()
        with self._lock:
            cached = self._tokens.get((email, audience))
            if cached and cached[0] - now > TOKEN_REUSE_MARGIN:
                return cached[1]
        issued = int(now)
        subject = str(int(hashlib.sha256(email.encode()).hexdigest()[:16], 16))
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "azp": subject,
            "sub": subject,
            "email": email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + TOKEN_LIFETIME,
        }
        token: str = jwt.encode(self._signer, claims).decode()  # type: ignore[no-untyped-call]
        with self._lock:
            self._tokens[(email, audience)] = (issued + TOKEN_LIFETIME, token)
        return token

    def certificates(self) -> dict[str, str]:
        """``{kid: certificate}``, the format of Google's v1 certs endpoint."""
        return {self.kid: self.certificate_pem}


def self_signed_certificate(key: rsa.RSAPrivateKey, kid: str) -> str:
    """A PEM certificate for ``key``, named after its key id, as Google's certs endpoint
    publishes them."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class CertificateServer:
    """Serves ``GET /certs`` on loopback, with Cache-Control as Google sends it."""

    def __init__(self, identity: Identity, host: str, port: int) -> None:
        body = json.dumps(identity.certificates()).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/certs":
                    self.send_error(404, "The emulator serves /certs only.")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={CERTS_MAX_AGE}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="emulator-certs", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
