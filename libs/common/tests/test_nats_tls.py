"""NATS_TLS_CA turns TLS on: a service trusts the server only through that CA."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from figranium_common import nats as topology
from figranium_common.config import Config
from figranium_common.redact import redact_url
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A NATS server requiring TLS (a certificate from a CA made here) and a password."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate("test CA", ca_key, None)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        _certificate("127.0.0.1", server_key, ca.subject)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = _pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    cert_file = _pem(tmp_path / "server.pem", server.public_bytes(serialization.Encoding.PEM))
    key_file = _pem(
        tmp_path / "server.key",
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'tls {{ cert_file: "{cert_file}", key_file: "{key_file}" }}\n'
        'authorization { users = [ {user: "runner", password: "pw"} ] }\n'
    )
    with (tmp_path / "nats.log").open("wb") as log:
        proc = subprocess.Popen([LocalNats.binary(), "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield port, Path(ca_file)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_tls_with_the_ca_from_the_settings(tls_nats: tuple[int, Path]) -> None:
    port, ca = tls_nats
    config = Config.model_validate(
        {
            "NATS_URL": f"nats://127.0.0.1:{port}",
            "NATS_USER": "runner",
            "NATS_PASSWORD": "pw",
            "NATS_TLS_CA": str(ca),
        }
    )
    auth = topology.NatsAuth.from_config(config)
    assert auth.tls is not None
    # The server requires TLS: connecting at all means the handshake trusted that CA.
    nc = await topology.connect(config.nats_url, name="test", wait_seconds=0, auth=auth)
    try:
        assert nc.is_connected
        await nc.flush()
    finally:
        await topology.close(nc)


def test_no_tls_unless_asked() -> None:
    assert topology.NatsAuth.from_config(Config.model_validate({})).tls is None


def test_urls_are_logged_without_their_password() -> None:
    assert redact_url("nats://runner:s3cret@nats:4222") == "nats://********@nats:4222"
    assert redact_url("nats://nats:4222") == "nats://nats:4222"
