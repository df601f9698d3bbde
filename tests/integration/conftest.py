"""Run every integration test that drives the ingestor once per WebSocket client.

A module that imports from :mod:`tickpipe.ingestor` (or the ingestor helpers) gets each test
twice, ``[picows]`` and ``[websockets]``: the ingestor's connections open with that client
(:func:`tickpipe.ingestor.wsclient.default_client`, which a :class:`WsOptions` without a client
and settings without ``TICKPIPE_WS_CLIENT`` use), so faults, TLS, rotation and Alpaca's binary
frames are checked against both.
"""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

from tickpipe.ingestor import wsclient


def drives_ingestor(module: types.ModuleType) -> bool:
    """Return whether ``module`` uses the ingestor's code (directly or through its helpers)."""
    owners = ("tickpipe.ingestor", "tests.integration.ingestor_support")
    return any(
        str(getattr(value, "__module__", "") or "").startswith(owners)
        or getattr(value, "__name__", "") in owners
        for value in vars(module).values()
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ws_client" in metafunc.fixturenames and drives_ingestor(metafunc.module):
        metafunc.parametrize("ws_client", wsclient.WS_CLIENTS, indirect=True)


@pytest.fixture(autouse=True)
def ws_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make the parametrized client the ingestor's default for this test."""
    name = getattr(request, "param", wsclient.default_client())
    wsclient.check_client(name)  # a missing picows fails the test, never skips it
    monkeypatch.setattr(wsclient, "default_client", lambda: name)
    yield name
