"""Local receivers for the notifier's channels: a webhook endpoint that checks signatures, and
an SMTP server (aiosmtpd) with STARTTLS on a self-signed certificate made here."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class WebhookLog:
    secret: str
    fail_first: int = 0  # answer 500 to this many requests first
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    rejected: int = 0
    status_codes: list[int] = field(default_factory=list)
    hold: threading.Event | None = None  # when set, requests wait for it (a slow receiver)
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def webhook_receiver(secret: str, fail_first: int = 0) -> Iterator[tuple[str, WebhookLog]]:
    log = WebhookLog(secret=secret, fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ts = self.headers.get("X-Hamlet-Timestamp", "")
            # Computed here from the spec (HMAC-SHA256 over "<timestamp>.<body>"), not with the
            # sender's helper.
            want = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body,
                                        hashlib.sha256).hexdigest()  # fmt: skip
            got = self.headers.get("X-Hamlet-Signature", "")
            log.arrived.set()
            if log.hold is not None:
                log.hold.wait(60)
            with log.lock:
                if not hmac.compare_digest(want, got):
                    log.rejected += 1
                    code = 401
                elif log.fail_first > 0:
                    log.fail_first -= 1
                    code = 500
                else:
                    log.received.append(json.loads(body))
                    log.keys.append(self.headers["Idempotency-Key"])
                    code = 204
                log.status_codes.append(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hook", log
    finally:
        srv.shutdown()
        srv.server_close()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    messages: list[tuple[list[str], bytes, bool]] = field(default_factory=list)  # rcpts, data, tls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(tmp: Path, *, starttls: bool = True) -> Iterator[tuple[int, Mailbox, Path | None]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(
                (list(envelope.rcpt_tos), envelope.content, session.ssl is not None)
            )
            return "250 OK"

    kwargs: dict[str, Any] = {}
    cert: Path | None = None
    if starttls:
        cert, key = self_signed(tmp)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        kwargs = {"tls_context": ctx, "require_starttls": True}
    port = _free_port()
    ctl = Controller(Handler(), hostname="localhost", port=port, **kwargs)
    ctl.start()
    try:
        yield port, box, cert
    finally:
        ctl.stop()
