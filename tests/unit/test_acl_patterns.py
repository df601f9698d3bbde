"""The ACL rules generated from the namespace give every key exactly the writers it should have."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import pytest

from tickpipe.common.names import BAR_INTERVALS, Keys, Partition, archive_watermark
from tickpipe.deploy.acl import OPERATOR, STAGE_USERS, USERS, acl_rules, render_acl

NS = "tp"
K = Keys(NS)
P = Partition("binance", 3)
V = "binance"

#: Every key a stage writes, and who writes it (the dashboard writes only its health; the
#: archive only acks through its group and writes its watermarks; the operator the kill
#: switch, control entries and raw replays).
WRITERS: dict[str, set[str]] = {
    K.raw(P): {"ingestor", "processor", OPERATOR, "archive"},  # consumers only ack
    K.private_raw(V): {"ingestor", "processor", "archive"},
    K.gaps(P): {"ingestor", "processor", "archive"},
    K.trades(P): {"processor", "archive"},
    K.quotes(P): {"processor", "archive"},
    K.book(P): {"processor", "archive"},
    K.signals(P): {"processor", "trader", "archive"},  # the trader only acks through its group
    K.dead_letters(P): {"processor"},
    K.venue_bars(P): {"processor", "archive"},
    K.partial_depth(P): {"processor", "archive"},
    K.trade_corrections(P): {"processor", "archive"},
    K.venue_status(P): {"processor", "archive"},
    K.tickers(P): {"processor", "archive"},
    K.balances(V): {"processor", "archive"},
    K.venue_dead_letters(V): {"processor"},
    K.control(P): {"processor", OPERATOR},
    K.checkpoint(P): {"processor"},
    K.venue_checkpoint(V): {"processor"},
    K.lease(P): {"processor"},
    K.venue_lease(V): {"processor"},
    K.order_updates(V): {"processor", "trader", "archive"},  # the trader only acks
    K.orders(V): {"trader", "archive"},
    K.positions(V): {"trader"},
    K.intent(V, "tp-0123"): {"trader"},
    K.working_orders(V): {"trader"},
    K.kill_switch(V): {OPERATOR},
    f"{NS}:{{{V}}}:trader-lease": {"trader"},
    **{K.bars(P, i): {"processor", "archive"} for i in BAR_INTERVALS},
    archive_watermark(K.trades(P)): {"archive"},
    # processor: its ``bars:*`` selector matches, for stream appends only (a string key refuses)
    archive_watermark(K.bars(P, "1m")): {"archive", "processor"},
    **{K.health(s, "host-1"): {s} for s in STAGE_USERS},
}


def _write_patterns(rules: str) -> list[str]:
    """Return the key patterns (root and selectors) that allow writing."""
    out = []
    for token in re.findall(r"(?:%[RW]{1,2})?~\S+", rules.replace("(", " ").replace(")", " ")):
        perms, _, pattern = token.partition("~")
        if perms in ("", "%W", "%RW", "%WR"):
            out.append(pattern)
    return out


@pytest.mark.parametrize("key", sorted(WRITERS))
def test_each_key_is_writable_by_exactly_its_writers(key: str) -> None:
    rules = acl_rules(NS)
    writers = {u for u in USERS if any(fnmatchcase(key, p) for p in _write_patterns(rules[u]))}
    assert writers == WRITERS[key]


def test_no_user_reaches_another_namespace() -> None:
    other = Keys("tp2")
    for user, rules in acl_rules(NS).items():
        for pattern in _write_patterns(rules) + re.findall(r"%R~(\S+?)\)?(?:\s|$)", rules):
            assert not fnmatchcase(other.trades(P), pattern), (user, pattern)
            assert pattern.startswith(f"{NS}:"), (user, pattern)


def test_stream_appends_are_confined_to_selectors() -> None:
    """XADD is granted only inside a selector, never with the root (state) key patterns."""
    for user, rules in acl_rules(NS).items():
        root = re.sub(r"\([^)]*\)", "", rules)
        assert "+xadd" not in root and "+@stream" not in root, user
        assert "-@dangerous" in root, user


def test_rendered_file_has_no_plain_password() -> None:
    text = render_acl(NS, {u: f"plain-{u}-pw" for u in USERS})
    assert "plain-" not in text and text.count(" on #") == len(USERS) + 1 == len(STAGE_USERS) + 2
    # Nobody can log in as `default` (a password no one knows), yet the AOF loader, which
    # runs as `default`, may replay every transaction.
    default = text.splitlines()[0]
    assert re.fullmatch(r"user default on #[0-9a-f]{64} ~\* &\* \+@all", default), default
    assert default != render_acl(NS, {u: f"plain-{u}-pw" for u in USERS}).splitlines()[0]
    assert "nopass" not in text
    with pytest.raises(ValueError, match="password"):
        render_acl(NS, {"ingestor": "x"})
    with pytest.raises(ValueError, match="operator"):
        render_acl(NS, {u: f"plain-{u}-pw" for u in STAGE_USERS})


def test_the_operator_has_no_script_and_no_consumer_group() -> None:
    """Only plain commands on its keys: no EVAL to reach another key, no group to ack away."""
    rules = acl_rules(NS)[OPERATOR].split()
    assert not {"+eval", "+evalsha", "+xreadgroup", "+xack", "+xgroup|create"} & set(rules)
    assert "+@all" not in rules and "-@dangerous" in rules
