"""Transport security: ONE way to build a server's credentials, ONE way to open a channel.

Every hop is TLS. Between services it is mutual: each presents the certificate of its service
(the service's name is the certificate's DNS name), and each server checks its caller against
`services.kernel.access`. Clients of alerting (portal, CLI, load test) authenticate the server
only; their user is the JWT. Plaintext exists only with TOCSIN_INSECURE_DEV=true.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.kernel.settings import ENV_PREFIX, ServiceSettings, SettingsError

logger = logging.getLogger(__name__)

#: File names inside a TLS folder: those of a cert-manager Secret (kubernetes.io/tls + ca.crt),
#: so that such a Secret mounted as a folder is a TLS folder as it stands.
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

ChannelOptions = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes: the CA to trust and, for mutual TLS, our own certificate and key."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None


def load_material(folder: Path, *, own: bool = True) -> TlsMaterial:
    """Read a TLS folder; SettingsError naming the missing or unreadable file."""
    names = (CA_FILE, CERT_FILE, KEY_FILE) if own else (CA_FILE,)
    data: list[bytes] = []
    for name in names:
        path = folder / name
        try:
            data.append(path.read_bytes())
        except OSError as exc:
            raise SettingsError(
                f"{ENV_PREFIX}TLS_DIR: cannot read {path} ({exc.strerror})"
            ) from None
        if b"-----BEGIN" not in data[-1]:
            raise SettingsError(f"{ENV_PREFIX}TLS_DIR: {path} is not PEM")
    return TlsMaterial(*data)


def check(settings: ServiceSettings) -> TlsMaterial | None:
    """The service's TLS material, or None in insecure development; SettingsError otherwise."""
    if settings.tls_dir is not None:
        return load_material(settings.tls_dir)
    if settings.insecure_dev:
        return None
    raise SettingsError(
        f"{ENV_PREFIX}TLS_DIR is not set: every service needs its certificate"
        f" ({ENV_PREFIX}INSECURE_DEV=true runs plaintext, for development only)"
    )


def server_credentials(
    material: TlsMaterial, *, require_client_cert: bool
) -> grpc.ServerCredentials:
    """Credentials of a TLS server; with `require_client_cert`, callers must present a
    certificate signed by the same CA (mutual TLS)."""
    if material.cert is None or material.key is None:
        raise SettingsError("a server needs its own certificate and key (tls.crt, tls.key)")
    return grpc.ssl_server_credentials(
        [(material.key, material.cert)],
        root_certificates=material.ca,
        require_client_auth=require_client_cert,
    )


def add_port(
    server: grpc.aio.Server,
    address: str,
    material: TlsMaterial | None,
    *,
    require_client_cert: bool,
) -> int:
    """Bind `address` on `server`: TLS with `material`, plaintext when it is None."""
    if material is None:
        return server.add_insecure_port(address)
    creds = server_credentials(material, require_client_cert=require_client_cert)
    return server.add_secure_port(address, creds)


def channel_to(
    address: str,
    *,
    service: str,
    material: TlsMaterial | None,
    options: ChannelOptions = (),
) -> grpc.aio.Channel:
    """A channel to `service` at `address`: the server must prove it is `service` (its
    certificate's name), whatever address it was reached at; plaintext when `material` is None."""
    if material is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    creds = grpc.ssl_channel_credentials(
        root_certificates=material.ca,
        private_key=material.key,
        certificate_chain=material.cert,
    )
    return grpc.aio.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", service), *options]
    )


def open_channel(
    settings: ServiceSettings, *, service: str, address: str, options: ChannelOptions = ()
) -> grpc.aio.Channel:
    """THE way a service calls another: mutual TLS with this service's certificate."""
    return channel_to(address, service=service, material=check(settings), options=options)


class ClientSettings(BaseSettings):
    """How a client outside the services (CLI, load test, portal) reaches alerting."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # CA certificate to trust for the server (PEM file); or use tls_dir's ca.crt.
    tls_ca_file: Path | None = None
    # A TLS folder (ca.crt, and tls.crt/tls.key sent as a client certificate when present).
    tls_dir: Path | None = None
    # Plaintext, for development only.
    insecure_dev: bool = Field(default=False)

    def material(self) -> TlsMaterial | None:
        """What `channel_to` needs; SettingsError when neither TLS nor the dev flag is set."""
        if self.tls_dir is not None:
            own = (self.tls_dir / CERT_FILE).exists()
            return load_material(self.tls_dir, own=own)
        if self.tls_ca_file is not None:
            try:
                return TlsMaterial(self.tls_ca_file.read_bytes())
            except OSError as exc:
                raise SettingsError(
                    f"{ENV_PREFIX}TLS_CA_FILE: cannot read {self.tls_ca_file} ({exc.strerror})"
                ) from None
        if self.insecure_dev:
            return None
        raise SettingsError(
            f"set {ENV_PREFIX}TLS_CA_FILE (the CA of the server's certificate) or"
            f" {ENV_PREFIX}TLS_DIR; {ENV_PREFIX}INSECURE_DEV=true for plaintext in development"
        )


def connect(
    address: str,
    *,
    service: str = "alerting",
    settings: ClientSettings | None = None,
    options: ChannelOptions = (),
) -> grpc.aio.Channel:
    """A client's channel to a service, TLS as the environment (TOCSIN_TLS_*) says."""
    material = (settings or ClientSettings()).material()
    return channel_to(address, service=service, material=material, options=options)
