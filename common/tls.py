"""Build the TLS client context every venue connection uses: system CAs plus an optional CA file.

``TICKPIPE_CA_FILE`` names a PEM file of extra certificate authorities to trust on top of the
system store (the mock exchange's ``ca.pem`` when it serves ``wss://``/``https://``, or a
company proxy's CA). Each stage's ``run`` calls :func:`trust_ca_file` once with the setting;
WebSocket connections take :func:`ws_ssl` and aiohttp sessions :func:`http_connector`. A plain
``ws://``/``http://`` URL needs none of this.
"""

from __future__ import annotations

import ssl

import aiohttp

from tickpipe.common.errors import ConfigError

__all__ = [
    "check_ca_file",
    "client_context",
    "http_connector",
    "http_ssl",
    "trust_ca_file",
    "unverified_context",
    "ws_ssl",
]

_state: dict[str, ssl.SSLContext | str | None] = {"ca_file": None, "context": None}


def check_ca_file(path: str) -> str:
    """Return ``path`` if it holds at least one PEM certificate; ValueError saying why not."""
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"not a readable PEM certificate file ({exc})") from None
    return path


def trust_ca_file(path: str | None) -> None:
    """Trust the CAs in ``path`` (None: the system store only) in every later connection."""
    if path is not None:
        try:
            check_ca_file(path)
        except ValueError as exc:
            raise ConfigError(f"TICKPIPE_CA_FILE={path}: {exc}") from None
    if path != _state["ca_file"]:
        _state.update(ca_file=path, context=None)


def client_context() -> ssl.SSLContext:
    """Return the process's verifying client context (hostname and chain checked)."""
    context = _state["context"]
    if not isinstance(context, ssl.SSLContext):
        context = ssl.create_default_context()
        ca_file = _state["ca_file"]
        if isinstance(ca_file, str):
            context.load_verify_locations(cafile=ca_file)
        _state["context"] = context
    return context


def ws_ssl(url: str, verify: bool = True) -> ssl.SSLContext | None:
    """Return the ``ssl`` argument for a WebSocket connection to ``url`` (None for ``ws://``).

    ``verify=False`` accepts any certificate: only for a local gateway whose certificate is
    self-signed by design (IBKR's Client Portal gateway), never for a venue on the internet.
    """
    if not url.startswith("wss://"):
        return None
    return client_context() if verify else unverified_context()


def http_ssl(verify: bool = True) -> ssl.SSLContext | bool:
    """Return aiohttp's ``ssl`` argument: the verifying context, or ``False`` (no checks)."""
    return client_context() if verify else False


def unverified_context() -> ssl.SSLContext:
    """Return a client context that checks neither the chain nor the host name."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_connector() -> aiohttp.TCPConnector:
    """Return a connector for an aiohttp session that verifies ``https://`` with the context."""
    return aiohttp.TCPConnector(ssl=client_context())
