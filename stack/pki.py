"""A small certificate authority: per-service certificates for mutual TLS (`make run` and tests).

Production takes its certificates from Secrets (cert-manager); `make run` and the tests issue
theirs here. A service's identity is its name, written as the certificate's common name and as
its one DNS subject alternative name (what gRPC reports as the peer's identity).
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.kernel.tls import ClientSettings

#: File names inside a TLS folder: the same as a cert-manager Secret's keys, so that a Secret
#: mounted as a folder is a TLS folder as it stands.
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
#: File names of the authority itself (kept apart from the services' folders).
CA_KEY_FILE = "ca.key"

_CURVE = ec.SECP256R1()


@dataclass(frozen=True)
class Authority:
    """A CA certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_authority(*, name: str = "tocsin development CA", days: int = 3650) -> Authority:
    """A fresh self-signed CA."""
    key = ec.generate_private_key(_CURVE)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    authority: Authority,
    identity: str,
    *,
    days: float = 397,
    not_before: datetime.datetime | None = None,
    extra_dns: tuple[str, ...] = (),
) -> tuple[bytes, bytes]:
    """A certificate for `identity` (server and client use) as (cert PEM, key PEM)."""
    key = ec.generate_private_key(_CURVE)
    start = not_before or _now() - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in (identity, *extra_dns)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def write_folder(folder: Path, *, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> Path:
    """Write a TLS folder (tls.crt, tls.key, ca.crt), the key readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CA_FILE).write_bytes(ca_pem)
    (folder / CERT_FILE).write_bytes(cert_pem)
    key_path = folder / KEY_FILE
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.chmod(0o600)
    key_path.write_bytes(key_pem)
    return folder


def load_or_create_authority(folder: Path) -> Authority:
    """The CA kept in `folder` (ca.crt, ca.key), created on first use."""
    cert_path, key_path = folder / CA_FILE, folder / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: not an EC private key")
        return Authority(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
    authority = new_authority()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    cert_path.write_bytes(authority.cert_pem)
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.write_bytes(_pem_key(authority.key))
    return authority


def ensure_identities(root: Path, identities: tuple[str, ...]) -> dict[str, Path]:
    """A CA in `root/ca` and a TLS folder per identity in `root/<identity>`, made where missing.

    A certificate within 30 days of its end is issued again; so is every one if the CA changed.
    """
    authority = load_or_create_authority(root / "ca")
    folders: dict[str, Path] = {}
    for identity in identities:
        folder = root / identity
        if not _still_good(folder, authority):
            cert_pem, key_pem = issue(authority, identity)
            write_folder(folder, ca_pem=authority.cert_pem, cert_pem=cert_pem, key_pem=key_pem)
        folders[identity] = folder
    return folders


def _still_good(folder: Path, authority: Authority) -> bool:
    try:
        ca_pem = (folder / CA_FILE).read_bytes()
        cert = x509.load_pem_x509_certificate((folder / CERT_FILE).read_bytes())
        (folder / KEY_FILE).stat()
    except (OSError, ValueError):
        return False
    fresh = cert.not_valid_after_utc - _now() > datetime.timedelta(days=30)
    return ca_pem == authority.cert_pem and cert.issuer == authority.cert.subject and fresh


#: Certificates `make run` issues besides one per service: the supervisor's health checks,
#: the registration front end (demo and load-test subscribers), and a platform team of the
#: SMS API (load test).
CLIENTS = ("stack", "registration", "api-loadtest")


def stack_identities(root: Path, services: tuple[str, ...]) -> dict[str, Path]:
    """Every TLS folder `make run` needs under `root` (var/pki), made on first start."""
    return ensure_identities(root, (*services, *CLIENTS))


def client_settings(var: Path, identity: str = "registration") -> ClientSettings:
    """TLS settings of a development client of `make run`'s stack (demo, load test)."""
    return ClientSettings(tls_dir=var / "pki" / identity)


def secret(path: Path) -> str:
    """A random secret kept in `path` (owner-only), made on first use: e.g. the audit key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()
