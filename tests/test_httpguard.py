"""sesshu.httpguard: connections only to allowed addresses, with TLS still checking the host name."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sesshu import httpget
from sesshu.httpguard import AddressRefused, GuardedSession, refused_in
from sesshu.plugin import addresses
from tests.harness.site import FixtureSite, Route, refused_url


@pytest.fixture(autouse=True)
def nothing_allowed() -> Iterator[None]:
    addresses.allow([])
    yield
    addresses.allow([])


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name localhost only (no IP address in it), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS site on 127.0.0.1 whose certificate names localhost; its port and the certificate."""
    cert, key = _certificate(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_tls_checks_the_host_name_while_the_socket_goes_to_the_checked_address(tls_site: tuple[int, Path]) -> None:
    port, cert = tls_site
    addresses.allow(["127.0.0.0/8", "::1/128"])
    with GuardedSession() as session:
        assert session.get(f"https://localhost:{port}/", verify=str(cert), timeout=10).text == "hello"
        # The certificate names localhost, not 127.0.0.1: the address is not what TLS checks.
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://127.0.0.1:{port}/", verify=str(cert), timeout=10)


def test_a_ca_bundle_from_the_environment_still_counts(tls_site: tuple[int, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    port, cert = tls_site
    addresses.allow(["127.0.0.0/8", "::1/128"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    page = httpget.get(f"https://localhost:{port}/")
    assert page is not None and page.content == b"hello"


def test_https_to_a_refused_address_is_refused_before_any_handshake(tls_site: tuple[int, Path]) -> None:
    port, cert = tls_site
    with GuardedSession() as session, pytest.raises(requests.ConnectionError) as info:
        session.get(f"https://localhost:{port}/", verify=str(cert), timeout=10)
    refusal = refused_in(info.value)
    assert isinstance(refusal, AddressRefused)
    assert (refusal.host, refusal.why) == ("localhost", "loopback") and refusal.address in ("127.0.0.1", "::1")


def test_refused_in_finds_nothing_in_other_failures() -> None:
    addresses.allow(["127.0.0.0/8"])
    with FixtureSite({"/": Route(body=b"x")}) as site, GuardedSession() as session:
        assert session.get(site.url + "/", timeout=10).content == b"x"
    with refused_url() as url, GuardedSession() as session, pytest.raises(requests.ConnectionError) as info:
        session.get(url + "/", timeout=10)  # connection refused by the host, not by the guard
    assert refused_in(info.value) is None
