"""Serve the mock over TLS: generate a private CA and a loopback certificate, or load the user's.

The live venues speak only ``wss://`` and ``https://`` (Binance Spot: ``wss://stream.binance.com
:9443``, ``https://api.binance.com``; Alpaca: ``wss://stream.data.alpaca.markets``,
``https://paper-api.alpaca.markets``), and some clients refuse anything else. :func:`generate`
writes a fresh CA (``ca.pem``) and a server certificate it signs (``cert.pem``/``key.pem``, key
file 0600) for ``localhost``, ``127.0.0.1``, ``::1`` and the bind host; clients trust the mock
by trusting ``ca.pem`` (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` or ``TICKPIPE_CA_FILE``).
The CA's private key is never written: nothing else can be signed with it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import weakref
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsFiles", "Transports", "generate", "server_context"]

_VALID_DAYS = 30


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and key, and the CA file clients should trust."""

    cert: Path
    key: Path
    ca: Path


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def generate(directory: str | Path, hosts: list[str], now: datetime.datetime) -> TlsFiles:
    """Write a new CA and a server certificate for ``hosts`` into ``directory``; return the paths.

    ``now`` is the validity start (certificates are valid from one hour before it for 30 days).
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=_VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickpipe mock_ws CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", folder / "ca.pem")
    pem = serialization.Encoding.PEM
    _write(
        files.key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    _write(files.cert, cert.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    _write(files.ca, ca.public_bytes(pem), 0o644)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """Return the server-side context for ``files`` (TLS 1.2 or newer); ValueError if unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate {files.cert}: {exc}") from None
    return context


class Transports:
    """Remember every connection a server answered, to abort what its shutdown leaves.

    A TLS transport's ``close()`` waits for the peer's close_notify; if the event loop ends
    first (a test's ``asyncio.run``), the socket is left open. After the server's cleanup,
    :meth:`abort` drops them at once, as the venue does at a restart.
    """

    def __init__(self) -> None:
        self._seen: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """An ``on_response_prepare`` signal handler."""
        if request.transport is not None:
            self._seen.add(request.transport)

    async def abort(self) -> None:
        """Abort every remembered transport and let the loop run their callbacks once."""
        for transport in list(self._seen):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        await asyncio.sleep(0)
