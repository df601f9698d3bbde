"""Make a fakeredis server refuse commands the way a real one does at maxmemory, or when busy.

:class:`Refusals` answers the commands it covers with an error reply (``OOM command not
allowed when used memory > 'maxmemory'.`` by default) while ``on`` is set, before they run, so
nothing of them takes effect: redis-py raises the same exception it raises for a real server
(an ``OutOfMemoryError``; queued in ``MULTI``, the ``EXEC`` is aborted). ``commands=DENYOOM`` are
the commands Redis refuses at maxmemory (flag ``denyoom``) plus ``EVAL``/``EVALSHA`` (a script
that writes is refused at its first write); ``commands=None`` refuses every command, as
``BUSY`` or ``LOADING`` do.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import fakeredis
from fakeredis._helpers import SimpleError

__all__ = ["DENYOOM", "OOM_REPLY", "Refusals", "refusing_redis"]

OOM_REPLY = "OOM command not allowed when used memory > 'maxmemory'."


def _denyoom() -> frozenset[str]:
    table = json.loads((Path(fakeredis.__file__).parent / "commands.json").read_text())
    names = {name.split(" ")[0] for name, info in table.items() if "denyoom" in info[2]}
    return frozenset(names | {"eval", "evalsha", "fcall"})


DENYOOM = _denyoom()


class Refusals:
    """While ``on``, answer the covered commands of ``server`` with ``reply``; count them."""

    def __init__(
        self,
        server: fakeredis.FakeServer,
        reply: str = OOM_REPLY,
        *,
        commands: frozenset[str] | None = DENYOOM,
    ) -> None:
        self.reply = reply
        self.commands = commands
        self.on = False
        self.refused: Counter[str] = Counter()
        acl = server.acl
        validate = acl.validate_command

        def refuse_or_validate(username: bytes, client_info: Any, fields: list[bytes]) -> None:
            if self.on and fields:
                name = fields[0].decode(errors="replace").lower()
                if self.commands is None or name in self.commands:
                    self.refused[name] += 1
                    raise SimpleError(self.reply)
            validate(username, client_info, fields)

        acl.validate_command = refuse_or_validate  # type: ignore[method-assign]


def refusing_redis(
    reply: str = OOM_REPLY, *, commands: frozenset[str] | None = DENYOOM
) -> tuple[fakeredis.FakeAsyncRedis, Refusals]:
    """Return a client of a new fakeredis server and the :class:`Refusals` of that server."""
    server = fakeredis.FakeServer()
    return fakeredis.FakeAsyncRedis(server=server), Refusals(server, reply, commands=commands)
