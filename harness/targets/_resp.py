"""RESP on a socket, without a client library: one command on a fresh connection (PING while
a server starts, INFO), a pipelined connection (the keyspace dump), and INFO's text.

Used where a client library would be in the way: probing something that may not speak RESP,
a hot path (a dump per verify trial), or a server that hangs up.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import hiredis
import redis


class _NotRESP(Exception):
    """The peer answered, but not in RESP."""


def _encode(argv: Sequence[bytes]) -> bytes:
    return b"".join([b"*%d\r\n" % len(argv), *(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)])


def _resp_call(port: int, argv: Sequence[bytes], *, timeout_s: float) -> Any:
    """One command on a fresh connection; the reply (a hiredis.ReplyError for an error).
    OSError when nothing listens or the peer hangs up; hiredis.ProtocolError for non-RESP."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(("127.0.0.1", port))  # an address: no getaddrinfo round
        sock.sendall(_encode(argv))
        reader = hiredis.Reader()
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection without a reply")
            reader.feed(data)


def _ping(port: int) -> str:
    """"ready" (+PONG), "loading" (-LOADING) or "down" (not listening / hung up); raises
    _NotRESP for an answer that is not RESP or an error other than LOADING."""
    try:
        reply = _resp_call(port, (b"PING",), timeout_s=5.0)
    except hiredis.ProtocolError as exc:
        raise _NotRESP(f"its answer to PING is not RESP ({exc})") from None
    except OSError:
        return "down"
    if isinstance(reply, hiredis.ReplyError):
        if str(reply).startswith("LOADING"):
            return "loading"
        raise _NotRESP(f"it answered PING with the error {str(reply)!r}")
    if reply not in (b"PONG", "PONG"):
        raise _NotRESP(f"it answered PING with {reply!r}, not PONG")
    return "ready"


def _listener_pid(port: int) -> int | None:
    """The ``process_id`` INFO server reports on `port` (None: not reported, or no answer)."""
    try:
        reply = _resp_call(port, (b"INFO", b"server"), timeout_s=5.0)
    except (OSError, hiredis.ProtocolError):
        return None
    if not isinstance(reply, bytes | str):
        return None
    value = _parse_info(reply).get("process_id", "")
    return int(value) if value.isdigit() else None


def _parse_info(text: bytes | str) -> dict[str, str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


class _RawConnection:
    """One RESP connection with pipelining (no client library: a dump is on the hot path of
    every verify trial)."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        try:
            self.sock.connect(("127.0.0.1", port))
        except BaseException:
            self.sock.close()
            raise
        self.reader = hiredis.Reader()

    def pipeline(self, commands: Sequence[Sequence[bytes]]) -> list[Any]:
        self.sock.sendall(b"".join(_encode(argv) for argv in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                self.reader.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise redis.exceptions.ResponseError(str(reply))
            replies.append(reply)
        return replies

    def close(self) -> None:
        self.sock.close()
