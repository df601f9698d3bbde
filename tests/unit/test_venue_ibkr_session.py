"""The pure IBKR gateway session: frames in, actions out (time as integer ns arguments)."""

from __future__ import annotations

from tickpipe.venues.ibkr.session import (
    Bulletin,
    Fail,
    GatewaySession,
    Ready,
    Reauthenticate,
    Send,
    Tickle,
    smd_message,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S
WAITING = {"message": "waiting for session"}  # protocols.md §4
AUTHED = {"topic": "sts", "args": {"authenticated": True}}


def hb(at_ns: int) -> dict[str, object]:
    return {"topic": "system", "hb": at_ns // 1_000_000}


def sends(actions: list[object]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Send)]


def streaming(conids: list[int] | None = None) -> GatewaySession:
    conids = conids or [265598, 272093]
    session = GatewaySession(conids, T0, topics=("sor", "str", "spl"))
    assert session.receive(WAITING, T0) == []
    actions = session.receive(AUTHED, T0)
    assert sends(actions) == [
        *[f'smd+{c}+{{"fields":["31","7059","84","86","88","85","55"]}}' for c in conids],
        "sor+{}",
        "str+{}",
        "spl+{}",
    ]
    assert Ready(tuple(conids)) in actions
    return session


def test_authenticated_session_subscribes_every_contract_and_the_private_topics() -> None:
    streaming()


def test_smd_is_sent_again_before_the_gateway_ends_it_after_ten_minutes() -> None:
    session = streaming([265598])
    seen: list[str] = []
    # Heartbeats every 10 s for 25 minutes: every subscription must be renewed before 600 s.
    last_sent = T0
    for step in range(1, 151):
        now = T0 + step * 10 * S
        for text in sends(session.receive(hb(now), now)):
            if text.startswith("smd+"):
                seen.append(text)
                assert now - last_sent < 600 * S
                last_sent = now
        assert now - last_sent < 600 * S, f"smd+265598 lapsed at {(now - T0) // S} s"
    assert seen == [smd_message(265598)] * 2
    assert session.resubscriptions == 2


def test_keepalive_sends_tic_and_asks_for_a_tickle_about_once_a_minute() -> None:
    session = streaming([265598])
    tics = []
    for step in range(1, 31):  # five minutes of heartbeats
        now = T0 + step * 10 * S
        actions = session.receive(hb(now), now)
        if "tic" in sends(actions):
            assert Tickle() in actions
            tics.append(now)
    assert len(tics) == 5
    assert all(b - a <= 60 * S for a, b in zip([T0, *tics], tics, strict=False))


def test_expired_session_asks_for_reauthentication_and_resubscribes_after_it() -> None:
    session = streaming([265598])
    lost = {"topic": "sts", "args": {"authenticated": False, "competing": True}}
    actions = session.receive(lost, T0 + S)
    assert actions == [Reauthenticate(True, "")]
    assert session.subscribed_at == {}
    # Nothing is re-subscribed while unauthenticated, however long it takes.
    assert not [t for t in sends(session.receive(hb(T0 + 700 * S), T0 + 700 * S)) if "smd" in t]
    again = session.receive(AUTHED, T0 + 701 * S)
    assert smd_message(265598) in sends(again)


def test_a_second_waiting_for_session_means_the_token_was_refused() -> None:
    session = GatewaySession([265598], T0)
    assert session.receive(WAITING, T0) == []
    (fail,) = session.receive(WAITING, T0 + S)
    assert isinstance(fail, Fail) and "session token" in str(fail.error)


def test_subscribing_at_runtime_sends_smd_now_and_unsubscribing_sends_umd() -> None:
    session = streaming([265598])
    assert sends(session.change("subscribe", [8314], T0)) == [smd_message(8314)]
    assert sends(session.change("unsubscribe", [265598], T0)) == ["umd+265598+{}"]
    assert session.conids == [8314]


def test_bulletins_and_notifications_are_reported_for_the_log() -> None:
    session = streaming([265598])
    bulletin = {"topic": "blt", "args": [{"id": "b1", "message": "Exchange halt"}]}
    (action,) = [a for a in session.receive(bulletin, T0) if isinstance(a, Bulletin)]
    assert action.topic == "blt" and "Exchange halt" in action.text
    notice = {"topic": "ntf", "args": [{"id": "n1", "text": "Maintenance"}]}
    assert [a.topic for a in session.receive(notice, T0) if isinstance(a, Bulletin)] == ["ntf"]
