"""The event store's header parser must read NATS header blocks exactly as nats-py does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from infra.jetstream_store import parse_header_lines

_bytes = st.binary(max_size=40) | st.sampled_from(
    [b"Nats-Msg-Id", b" Mf-Type ", b"Bad Name", b"tab\tname", b"\x1cname", b"caf\xc3\xa9", b""]
)
_line = st.tuples(_bytes, st.sampled_from([b":", b": ", b"", b"::"]), _bytes).map(b"".join)


@given(st.lists(_line, max_size=12))
def test_same_result_as_nats_py(lines):
    raw = b"\r\n".join(lines) + b"\r\n\r\n"
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_a_stored_event_header_block():
    raw = (
        b"Nats-Msg-Id: 01a2\r\nMf-Type: project.proposed\r\nNats-Sequence: 12\r\n"
        b"Nats-Time-Stamp: 2026-11-25T21:36:09.627321847Z\r\n\r\n"
    )
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)
    assert parse_header_lines(raw)["Nats-Sequence"] == "12"


@given(st.binary(max_size=200))
def test_same_result_as_nats_py_on_any_bytes(raw):
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)
