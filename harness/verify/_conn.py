"""The client side of a verify trial: one raw RESP connection to the server, commands sent
pipelined, replies read one at a time (so each acknowledgement gets its own time).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from typing import Any

import hiredis

__all__ = ["Conn", "ServerGone", "encode", "info_field"]

def encode(argv: Sequence[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class ServerGone(Exception):
    """The connection closed or reset: the server died."""


class Conn:
    """One RESP connection: pipelined sends, replies read one at a time with their time."""

    def __init__(self, port: int, *, timeout_s: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout_s)
            self.sock.connect(("127.0.0.1", port))  # an address: no getaddrinfo round
        except BaseException:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            raise ServerGone(str(exc)) from None

    def next_reply(self) -> Any:
        """The next reply (an error reply is a hiredis.ReplyError instance)."""
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise ServerGone(str(exc)) from None
            if not data:
                raise ServerGone("connection closed")
            self.reader.feed(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def info_field(conn: Conn, name: bytes, section: bytes = b"persistence") -> bytes | None:
    """One field of INFO `section` (None: not there), over `conn` with nothing pending."""
    conn.send(encode((b"INFO", section)))
    reply = conn.next_reply()
    if not isinstance(reply, bytes):
        return None
    for line in reply.splitlines():
        key, _, value = line.partition(b":")
        if key.strip() == name:
            return value.strip()
    return None


def end_run(conn: Conn | None, server: Any) -> None:
    """What a run that failed midway leaves: its connection closed and its server killed
    (either may be None: already ended)."""
    if conn is not None:
        conn.close()
    if server is not None:
        server.kill()
