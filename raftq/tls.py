"""TLS contexts for the client API: the server's, a node's towards its peers, a client's.

The raft port does not use TLS: the cluster secret authenticates and encrypts it (PySyncObj's
``password``). See docs/security.md for making the certificates.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from raftq.config import TLSConfig
from raftq.errors import ConfigError

__all__ = ["client_context", "peer_context", "server_context"]


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    """The API's context: ``cert``/``key``; with ``client_ca``, clients must present a
    certificate it signed (mutual TLS). TLS 1.2 at least.

    Raises:
        ConfigError: a file that is not a usable certificate, key or CA.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _chain(ctx, tls.cert, tls.key)
    if tls.client_ca is not None:
        _ca(ctx, tls.client_ca, "tls.client_ca")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_context(tls: TLSConfig) -> ssl.SSLContext:
    """How a node reaches the other nodes' APIs (forwarding): it verifies them against ``ca``
    (else ``client_ca``, else the system's CAs) and, under mutual TLS, presents its own
    certificate (which must then also be valid for client authentication)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    anchor = tls.ca or tls.client_ca
    if anchor is not None:
        _ca(ctx, anchor, "tls.ca" if tls.ca is not None else "tls.client_ca")
    if tls.client_ca is not None:
        _chain(ctx, tls.cert, tls.key)
    return ctx


def client_context(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> ssl.SSLContext:
    """A client's context: trust ``ca`` (else the system's CAs); present ``cert``/``key``
    to a node that requires client certificates.

    Raises:
        ConfigError: unusable files, or a key without a certificate.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        _ca(ctx, Path(ca), "--tls-ca")
    if cert is not None:
        _chain(ctx, Path(cert), None if key is None else Path(key))
    elif key is not None:
        raise ConfigError(["--tls-key given without --tls-cert"])
    return ctx


def _chain(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        where = f"{cert}" if key is None else f"{cert} / {key}"
        raise ConfigError([f"TLS certificate {where}: {e}"]) from e


def _ca(ctx: ssl.SSLContext, ca: Path, name: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError([f"{name} {ca}: not a usable CA file: {e}"]) from e
