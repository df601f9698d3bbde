"""The ingestor's templated XADD encoding equals the generic encoder's bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tickpipe.common.resp import encode_xadd
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.writer import encode_raw_xadd

_text = st.text(max_size=40)


@given(
    stream=st.text(min_size=1, max_size=30),
    kind=st.sampled_from(["ws", "ws-binary", "rest", "marker"]),
    venue=_text,
    conn=_text,
    seq=st.integers(min_value=0, max_value=2**63),
    ts_recv=st.integers(min_value=0, max_value=2**63),
    data=st.text(max_size=300),
    channel=_text,
)
def test_templated_xadd_is_the_generic_encoding(
    stream: str, kind: str, venue: str, conn: str, seq: int, ts_recv: int, data: str, channel: str
) -> None:
    frame = RawFrame(kind, venue, conn, seq, ts_recv, data, channel)
    assert encode_raw_xadd(stream, frame) == encode_xadd(stream, frame.to_fields())


def test_template_is_per_connection() -> None:
    a = RawFrame("ws", "binance", "c1", 1, 10, "x", "market")
    b = RawFrame("ws", "binance", "c2", 1, 10, "x", "market")
    encoded_a = encode_raw_xadd("s", a)
    encoded_b = encode_raw_xadd("s", b)
    assert b"$2\r\nc1\r\n" in encoded_a and b"$2\r\nc2\r\n" in encoded_b
    assert encode_raw_xadd("t", a) == encode_xadd("t", a.to_fields())
