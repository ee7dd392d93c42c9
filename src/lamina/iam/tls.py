"""TLS for the API: a certificate authority of the data dir's own, and a server certificate.

``lamina server --tls`` (or any non-loopback ``--host``) serves HTTPS. Without ``--tls-cert``/
``--tls-key`` Lamina creates, once, a private CA (``DIR/tls/ca.pem``, its key 0600) and a server
certificate it signs for localhost, the loopback addresses, the machine's name and the host
served on; clients trust ``DIR/tls/ca.pem`` (``AWS_CA_BUNDLE`` / ``verify=``). The server
certificate is renewed when it is close to expiry or does not cover the host.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lamina.store.keys import write_atomically

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # server certificate chain (PEM)
    key: Path  # its private key (PEM, 0600)
    ca: Path | None  # the CA clients should trust, when Lamina made it


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC key")
    return key


def _names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    ips = {"127.0.0.1", "::1"}
    hosts = {socket.gethostname()}
    try:
        ipaddress.ip_address(host)
        ips.add(host)
    except ValueError:
        hosts.add(host)
    names += [x509.DNSName(h) for h in sorted(hosts) if h and h != "localhost"]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(ips) if ip not in ("0.0.0.0", "::")]
    return names


def _ensure_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_key(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lamina local CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    write_atomically(key_path, [_key_pem(key)], mode=0o600)
    write_atomically(cert_path, [cert.public_bytes(serialization.Encoding.PEM)], mode=0o644)
    return cert, key


def _covers(cert: x509.Certificate, host: str) -> bool:
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    wanted = set(map(str, _names(host)))
    return wanted <= set(map(str, sans))


def ensure_server_certificate(directory: Path, host: str) -> TlsFiles:
    """The generated CA and a current server certificate for ``host`` (created as needed)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert, ca_key = _ensure_ca(directory)
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    if cert_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if _covers(current, host):
            return TlsFiles(cert_path, key_path, directory / "ca.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lamina")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_atomically(key_path, [_key_pem(key)], mode=0o600)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    write_atomically(cert_path, [chain], mode=0o644)
    os.chmod(directory, 0o700)
    return TlsFiles(cert_path, key_path, directory / "ca.pem")
