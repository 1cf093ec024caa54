"""TLS contexts for the client API: the server's, a node's towards its peers, a client's.

The raft port does not use TLS: the cluster secret authenticates and encrypts it (PySyncObj's
``password``). See docs/security.md for making the certificates.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from raftq.config import TLSConfig
from raftq.errors import ConfigError

__all__ = ["check_peer_trust", "client_context", "peer_context", "server_context"]


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


def check_peer_trust(tls: TLSConfig, api_host: str) -> None:
    """Check, before the node starts, that its peers will accept each other's certificates
    when they forward: a TLS handshake in memory between this node's server context and its
    peer context, naming ``api_host`` as the peers do. The nodes of a cluster share one CA,
    so a node that cannot verify its own certificate cannot verify its peers' either (a
    private CA without ``ca``: every write through a follower would answer 503).

    Raises:
        ConfigError: the handshake fails; the message names the cause and ``[tls] ca``.
    """
    server, peer = server_context(tls), peer_context(tls)
    # An unspecified bind address names no host: check the chain only.
    if api_host in ("", "0.0.0.0", "::"):
        peer.check_hostname = False
        host = None
    else:
        host = api_host
    try:
        _handshake(server, peer, host)
    except _ServerRefusedError as e:
        why = getattr(e.error, "verify_message", None) or e.error.reason or str(e.error)
        raise ConfigError(
            [
                f"[tls] cert {tls.cert} is refused by [tls] client_ca = {tls.client_ca} "
                f"({why}), so the nodes could not present it to each other when they "
                "forward: sign the nodes' certificates with the client_ca's CA, for client "
                "authentication too"
            ]
        ) from e.error
    except ssl.SSLError as e:
        why = getattr(e, "verify_message", None) or e.reason or str(e)
        anchor = (
            f"[tls] ca = {tls.ca}" if tls.ca is not None
            else f"[tls] client_ca = {tls.client_ca}" if tls.client_ca is not None
            else "the system's CAs (no [tls] ca)"
        )  # fmt: skip
        raise ConfigError(
            [
                f"[tls] cert {tls.cert} cannot be verified with {anchor} ({why}) for "
                f"{api_host or 'this node'}, so followers could not forward writes to the "
                "leader: set [tls] ca to the CA file that signed the nodes' certificates "
                "(each naming its API host)"
            ]
        ) from e


class _ServerRefusedError(Exception):
    """The server side of ``_handshake`` refused the client's certificate (``error``)."""

    def __init__(self, error: ssl.SSLError) -> None:
        super().__init__(str(error))
        self.error = error


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str | None) -> None:
    """A TLS handshake between ``client`` and ``server`` over memory buffers; raises the
    client's ``ssl.SSLError`` when it refuses the server's certificate, ``_ServerRefusedError``
    when the server refuses the client's."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(to_client, to_server, server_hostname=host)
    s = server.wrap_bio(to_server, to_client, server_side=True)
    pending = [c, s]
    for _ in range(16):  # a handshake is a few round trips
        for side in list(pending):
            try:
                side.do_handshake()
                pending.remove(side)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                if side is s:
                    raise _ServerRefusedError(e) from e
                raise
        # TLS 1.3: the client is done before the server has checked its certificate; the
        # server's next step (after the client's, in this order) checks it.
        if not pending:
            return
    raise ssl.SSLError("the TLS handshake did not complete")


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
