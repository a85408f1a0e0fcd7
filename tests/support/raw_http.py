"""Raw HTTP over a plain socket, for requests no well-behaved client library would send.

`exchange(port, request_bytes)` sends the bytes while reading whatever comes back, until a whole
response has arrived, the server closes, or the deadline passes. The answer's status, headers and
body are parsed loosely: a server may also answer nothing at all, which is fine; answering 500 or
a traceback is not.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import time
from dataclasses import dataclass

from tests.support.server_process import LOOPBACK

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})")
#: What a Python traceback or an aiohttp default error page would put into a response.
TRACEBACK_MARKERS = (b"Traceback (most recent call last)", b'File "/', b".py\", line ", b"aiohttp/")


@dataclass(frozen=True)
class RawAnswer:
    status: int | None
    head: bytes
    body: bytes

    @property
    def header_lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")[1:]

    def header(self, name: str) -> list[str]:
        prefix = name.lower().encode() + b":"
        return [line[len(prefix):].strip().decode("latin-1") for line in self.header_lines
                if line.lower().startswith(prefix)]

    def leaks_traceback(self) -> bool:
        blob = self.head + self.body
        return any(marker in blob for marker in TRACEBACK_MARKERS)


def exchange(port: int, data: bytes, *, timeout: float = 15.0, half_close: bool = False) -> RawAnswer:
    """Send while reading: a server may answer (e.g. 413) and close before it has read everything,
    and a client that only reads after sending would lose that answer to the connection reset.

    `half_close=True` shuts our sending side once everything is sent, for requests that promise
    more than they carry; the server then sees the client go away, and may answer nothing.
    (Browsers never half-close, and aiohttp drops the response of a request whose client did.)
    """
    chunks: list[bytes] = []
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.setblocking(False)
        view = memoryview(data)
        sent = 0
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while time.monotonic() < deadline:
                events = selector.select(timeout=0.1)
                done = False
                for _, mask in events:
                    if mask & selectors.EVENT_READ:
                        try:
                            chunk = sock.recv(65536)
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError:  # reset: keep what arrived before it
                            done = True
                            break
                        if not chunk:
                            done = True
                            break
                        chunks.append(chunk)
                        done = _complete(b"".join(chunks), head_only=data.startswith(b"HEAD "))
                    if mask & selectors.EVENT_WRITE and sent < len(data):
                        try:
                            sent += sock.send(view[sent : sent + 65536])
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:  # the server stopped reading; its answer may still come
                            sent = len(data)
                        if sent >= len(data):
                            if half_close:
                                with contextlib.suppress(OSError):
                                    sock.shutdown(socket.SHUT_WR)
                            selector.modify(sock, selectors.EVENT_READ)
                if done:
                    break
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    match = _STATUS_LINE.match(head)
    return RawAnswer(int(match.group(1)) if match else None, head, body)


def _complete(raw: bytes, *, head_only: bool = False) -> bool:
    """A whole response has arrived (keep-alive would otherwise make us wait for the deadline)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only or re.match(rb"HTTP/1\.[01] (1\d\d|204|304) ", head):
        return True
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if length:
        return len(body) >= int(length.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked\s*$", head):
        return body.endswith(b"0\r\n\r\n")
    return False


def request(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
            host: str = "127.0.0.1") -> bytes:
    """A keep-alive request, as a browser sends it, with an exact Content-Length (unless headers set one).

    Keep-alive matters: a server that answers before reading the whole body (413, 400) then reads
    and discards the rest ("lingering close"), so the client gets the answer instead of a reset.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    all_headers = dict(headers or {})
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in all_headers):
        all_headers["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
