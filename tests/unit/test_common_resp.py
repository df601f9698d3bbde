"""The RESP encoder produces exactly what redis-py sends for the same command."""

from __future__ import annotations

from redis.connection import PythonRespSerializer

from tickpipe.common.resp import encode_command, encode_xadd


def _redis_py(*args: str) -> bytes:
    serializer = PythonRespSerializer(6000, lambda v: v.encode() if isinstance(v, str) else v)
    return b"".join(serializer.pack(*args))


def test_xadd_bytes_equal_redis_py_packing() -> None:
    fields = {"kind": "ws", "data": '{"p":"61837.63000000","s":"BTCUSDT"}', "uni": "é→"}
    expected = _redis_py(
        "XADD", "tp:{binance:0}:raw", "*", *[x for kv in fields.items() for x in kv]
    )
    assert encode_xadd("tp:{binance:0}:raw", fields) == expected


def test_empty_and_binary_arguments() -> None:
    assert encode_command(["SET", "k", ""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    assert encode_command([b"ECHO", b"\r\n\x00"]) == b"*2\r\n$4\r\nECHO\r\n$3\r\n\r\n\x00\r\n"
