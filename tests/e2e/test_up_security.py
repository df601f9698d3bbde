"""`tickpipe up`'s embedded default: only its own Redis users get in, each writes only its keys,
and every file under the data directory is private to the user who runs it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.e2e.conftest import REPO, free_port, wait_for
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e

K = Keys("tp")
P = Partition("binance", 0)
SPARE = Partition("binance", 9)  # a partition nothing reads: where allowed writes are tried
V = "binance"
STAGE_USERS = ("ingestor", "processor", "trader", "dashboard", "archive")
ONCE = Retry(NoBackoff(), 0)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class UpRun:
    """``tickpipe up`` running in ``cwd`` with its data in ``cwd/.tickpipe`` (the default)."""

    cwd: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.cwd / ".tickpipe"

    def output(self) -> str:
        return "".join(
            (self.cwd / name).read_text(errors="replace") for name in ("up.out", "up.err")
        )

    def wait_ready(self) -> None:
        wait_for(
            lambda: (self.data / "redis.url").exists() or self.proc.poll() is not None,
            timeout_s=60, what="tickpipe up to start its redis-server",
        )  # fmt: skip
        assert self.proc.poll() is None, self.output()

    def passwords(self) -> dict[str, str]:
        """The embedded users' passwords, from the file ``tickpipe up`` keeps them in."""
        out = {}
        for line in (self.data / "redis.passwords").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                user, password = line.split()
                out[user] = password
        return out

    @property
    def port(self) -> int:
        url = (self.data / "redis.url").read_text().strip()
        return int(url.rsplit(":", 1)[1].split("/")[0])

    def client(self, user: str | None = None, password: str | None = None) -> redis.Redis:
        if user is not None and password is None:
            password = self.passwords()[user]
        return redis.Redis(port=self.port, username=user, password=password, retry=ONCE)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tickpipe", *args], env=self.env, cwd=self.cwd,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tickpipe up did not stop within 60 s") from None


def _start_up(cwd: Path, *args: str, **env: str) -> UpRun:
    full_env = _env(TICKPIPE_DASHBOARD_PORT=str(free_port()), **env)
    with open(cwd / "up.out", "ab") as out, open(cwd / "up.err", "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "up", *args], env=full_env, cwd=cwd,
            stdout=out, stderr=err,
        )  # fmt: skip
    return UpRun(cwd, proc, full_env)


@pytest.fixture
def up_runs() -> Iterator[list[UpRun]]:
    runs: list[UpRun] = []
    yield runs
    for run in runs:  # SIGTERM first: tickpipe up then stops its redis-server and the mock too
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(60)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()


def _refused(call: Callable[[], object]) -> bool:
    """Tell whether Redis refused ``call`` for want of login or permission."""
    try:
        call()
    except (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError):
        return True
    except redis.exceptions.ResponseError as exc:
        text = str(exc).lower()
        # (a command inside a script is refused with "the user executing the script can't ...")
        refusals = ("noauth", "noperm", "no permissions", "wrongpass", "executing the script can't")
        return any(w in text for w in refusals)
    return False


def _open_modes(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) with a group or other permission bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 and not path.is_symlink():
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def _forged_writes(client: redis.Redis, key: str) -> dict[str, Callable[[], object]]:
    """Every way of changing ``key`` (a stream) that a forger might try."""
    return {
        "xadd": lambda: client.xadd(key, {"forged": "1"}),
        "eval": lambda: client.eval(
            "return redis.call('XADD', KEYS[1], '*', 'forged', '1')", 1, key
        ),
        "multi": lambda: client.pipeline(transaction=True).xadd(key, {"forged": "1"}).execute(),
        "del": lambda: client.delete(key),
        "xtrim": lambda: client.xtrim(key, maxlen=0),
        "xdel": lambda: client.xdel(key, "1-1"),
        "set": lambda: client.set(key, "forged"),
        "copy": lambda: client.copy(K.trades(P), key, replace=True),
        "restore": lambda: client.restore(key, 0, b"\x00", replace=True),
        "xgroup-setid": lambda: client.xgroup_setid(key, "trader", "$"),
        "flushall": lambda: client.flushall(),
    }


def _cmdlines() -> list[bytes]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out.append((proc / "cmdline").read_bytes())
            except OSError:
                continue
    return out


def test_embedded_redis_admits_only_its_users_each_to_its_own_keys(
    tmp_path: Path, up_runs: list[UpRun]
) -> None:
    truth = tmp_path / ".tickpipe" / "ground-truth.jsonl"
    run = _start_up(
        tmp_path, "--rate", "50", "--ground-truth", str(truth), TICKPIPE_HYSTERESIS_BPS="1"
    )
    up_runs.append(run)
    run.wait_ready()
    # Nobody gets in without a password: not anonymously, not as `default`.
    anonymous = run.client()
    assert _refused(anonymous.ping)
    assert _refused(lambda: anonymous.xadd(K.signals(P), {"forged": "1"}))
    assert _refused(lambda: anonymous.get(K.kill_switch(V)))
    passwords = run.passwords()
    assert set(passwords) == {*STAGE_USERS, "operator"}
    clients = {user: run.client(user) for user in passwords}
    try:
        for guess in ("", "default", "tickpipe", passwords["operator"]):
            assert _refused(run.client("default", guess).ping), guess
        assert _refused(run.client("operator", "not-the-password").ping)
        # Only the processor writes signals; every other user's forgery is refused.
        for user in ("ingestor", "trader", "dashboard", "operator"):
            for how, call in _forged_writes(clients[user], K.signals(P)).items():
                assert _refused(call), (user, how)
        clients["processor"].xadd(K.signals(SPARE), {"allowed": "1"})  # the control case
        # The operator: kill switch, control entries and raw replays; reads everything.
        operator = clients["operator"]
        operator.xadd(K.raw(SPARE), {"allowed": "1"})
        operator.xadd(K.control(SPARE), {"allowed": "1"})
        trading = {
            "intent": lambda: operator.set(K.intent(V, "tp-forged"), "{}"),
            "orders": lambda: operator.xadd(K.orders(V), {"forged": "1"}),
            "positions": lambda: operator.hset(K.positions(V), "BTCUSDT", "100"),
            "working-orders": lambda: operator.sadd(K.working_orders(V), "tp-forged"),
            "trader-lease": lambda: operator.set(f"tp:{{{V}}}:trader-lease", "me"),
            "lease": lambda: operator.set(K.lease(P), "me"),
            "checkpoint": lambda: operator.delete(K.checkpoint(P)),
            "order-updates": lambda: operator.xadd(K.order_updates(V), {"forged": "1"}),
            "trades": lambda: operator.xadd(K.trades(P), {"forged": "1"}),
            "del-raw": lambda: operator.delete(K.raw(P)),
            "trim-raw": lambda: operator.xtrim(K.raw(P), maxlen=0),
        }
        for what, call in trading.items():
            assert _refused(call), what
        # The pipeline trades under these users: signals become orders at the mock.
        wait_for(lambda: read_ground_truth(truth).orders(), timeout_s=90,
                 what="an order at the mock")  # fmt: skip
        # The operator commands find the embedded default's operator login by themselves.
        for state, shown in (("on", "ON"), ("status", "ON"), ("off", "off")):
            result = run.cli("kill-switch", state)
            assert result.returncode == 0 and shown in result.stdout, result.stderr
        assert operator.get(K.kill_switch(V)) is None
        result = run.cli("streams")
        assert result.returncode == 0 and K.signals(P) in result.stdout, result.stderr
        result = run.cli("subscribe", "BTCUSDT")
        assert result.returncode == 0, result.stderr
        # Each stage's health check, with its own login or the embedded default's.
        for stage, user in (("ingestor", "ingestor"), ("processor", "processor"),
                            ("trader", "trader"), ("dashboard", "dashboard")):  # fmt: skip
            check = subprocess.run(
                [sys.executable, "-m", f"tickpipe.{stage}", "--check"], env=run.env, cwd=tmp_path,
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert check.returncode == 0, (stage, check.stdout + check.stderr)
            url = f"redis://{user}:{passwords[user]}@127.0.0.1:{run.port}/0"
            check = subprocess.run(
                [sys.executable, "-m", f"tickpipe.{stage}", "--check"],
                env={**run.env, "REDIS_URL": url},
                cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert check.returncode == 0, (stage, check.stdout + check.stderr)
        # No password on any command line (`ps` shows argv to every user), none in the ACL file.
        for cmdline in _cmdlines():
            for user, password in passwords.items():
                assert password.encode() not in cmdline, (user, cmdline)
        acl_text = (run.data / "redis" / "users.acl").read_text()
        assert acl_text.startswith("user default on #") and "nopass" not in acl_text
        assert not any(password in acl_text for password in passwords.values())
        signals = [Signal.from_fields(decode_fields(f)) for _, f in operator.xrange(K.signals(P))]
    finally:
        for client in clients.values():
            client.close()
        code = run.stop()
    output = run.output()
    assert code == 0, output
    # Every order at the mock came from one signal, once.
    orders = Counter(o["client_order_id"] for o in read_ground_truth(truth).orders())
    expected = {client_order_id_for(s.signal_id) for s in signals if s.action == "place"}
    assert orders and set(orders) <= expected and max(orders.values()) == 1, (orders, expected)
    # No stage was refused a command it needs, and no password reached a log.
    for log in [*(run.data / "logs").iterdir(), run.data / "redis" / "redis.log"]:
        text = log.read_text(errors="replace")
        assert "NOPERM" not in text and "no permissions" not in text, (log, text[-3000:])
        assert not any(password in text for password in passwords.values()), log
    # Every file and directory under the data directory is private.
    assert _open_modes(run.data) == []


def _trades_oldest(run: UpRun, password: str | None = None) -> object:
    operator = run.client("operator", password)
    try:
        wait_for(lambda: operator.xlen(K.trades(P)) > 0, timeout_s=60, what="trades")
        return operator.xrange(K.trades(P), count=1)[0]
    finally:
        operator.close()


def test_later_starts_keep_the_data_and_make_open_files_private(
    tmp_path: Path, up_runs: list[UpRun]
) -> None:
    first = _start_up(tmp_path, "--no-dashboard", "--rate", "50")
    up_runs.append(first)
    first.wait_ready()
    data = first.data
    wait_for(lambda: (data / "logs" / "trader.log").exists(), timeout_s=60, what="trader log")
    assert _open_modes(data) == []
    oldest = _trades_oldest(first)
    assert first.stop() == 0, first.output()
    assert _open_modes(data) == []
    passwords = first.passwords()
    # Someone loosens the modes (a copy, a backup tool, a careless chmod -R).
    loosened = {data: 0o755, data / "logs": 0o755, data / "logs" / "trader.log": 0o644,
                data / "redis": 0o750}  # fmt: skip
    for path, mode in loosened.items():
        path.chmod(mode)
    second = _start_up(tmp_path, "--no-dashboard", "--rate", "50")
    up_runs.append(second)
    second.wait_ready()
    try:
        assert second.passwords() == passwords  # reused: tools that logged in before still can
        assert _trades_oldest(second) == oldest  # the data is still there
    finally:
        assert second.stop() == 0, second.output()
    assert _open_modes(data) == []
    errors = (tmp_path / "up.err").read_text()
    for path, mode in loosened.items():  # each one fixed, with a warning naming it
        assert f"{path.relative_to(tmp_path)} had mode {mode:o}" in errors, (path, errors)
    # Passwords others could read are replaced; the data does not depend on them.
    (data / "redis.passwords").chmod(0o644)
    third = _start_up(tmp_path, "--no-dashboard", "--rate", "50")
    up_runs.append(third)
    third.wait_ready()
    try:
        renewed = third.passwords()
        assert all(renewed[user] != passwords[user] for user in passwords), renewed
        assert _refused(third.client("operator", passwords["operator"]).ping)
        assert _trades_oldest(third) == oldest
    finally:
        assert third.stop() == 0, third.output()
    assert _open_modes(data) == []
    assert (
        "redis.passwords was open to other users: made new passwords"
        in (tmp_path / "up.err").read_text()
    )
