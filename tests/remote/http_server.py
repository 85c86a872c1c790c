"""A real HTTP/1.1 server on 127.0.0.1 for the remote tests: Range requests, ETag and
Last-Modified with `If-Match`/`If-Unmodified-Since`, counted requests and bytes, and the
faults a real server shows on a bad day, each switched on by the test that needs it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from zoo import SAMPLES

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Behaviour:
    """What the server does; tests change these between runs."""

    latency: float = 0.0  # seconds before every answer: a round trip over a real network
    ignore_ranges: bool = False  # answer 200 with the whole file to a Range request
    truncate: bool = False  # declare the full length, send half, close the connection
    change_after: int | None = None  # after this many GETs every file changes (new ETag)
    failures: list[int] = field(default_factory=list)  # statuses answered first, in turn
    retry_after: str | None = None  # the Retry-After header sent with those failures
    etag: bool = True
    last_modified: bool = True
    redirect_loop: bool = False
    stall: float = 0.0  # seconds to wait before answering a GET (a server that hangs)
    forbidden: bool = False  # 403 unless the request carries basic auth
    longer: bool = False  # answer a range with more bytes than asked for


class Stats:
    """Requests (HEAD and GET) and body bytes sent, with the ranges asked for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.sent = 0
        self.ranges: list[str] = []
        self.gets = 0

    def arrived(self, get: bool) -> int:
        """Count a request as it arrives; the GETs that came before it."""
        with self.lock:
            self.requests += 1
            self.gets += get
            return self.gets - get

    def count(self, sent: int, asked: str | None, get: bool) -> None:
        with self.lock:
            self.sent += sent
            if asked:
                self.ranges.append(asked)


class Server:
    """Serves `files` (name -> bytes, or a path read when asked) at
    http://127.0.0.1:PORT/NAME."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.behaviour = Behaviour()
        self.stats = Stats()
        self.version = 0
        self.release = threading.Event()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str, auth: str = "", query: str = "") -> str:
        port = self.httpd.server_address[1]
        return f"http://{auth}127.0.0.1:{port}/{name}{query}"

    def reset(self) -> None:
        """Good behaviour and fresh counts; a request still stalled from before is let go
        and counts in the old counts."""
        self.release.set()
        self.release = threading.Event()
        self.behaviour = Behaviour()
        self.stats = Stats()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's 5 drops a burst of new connections: 1 s retries

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up early (a timeout, a refused answer) is no news."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as web servers do: else a body waits 40 ms for an ACK
    server_state: Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        state = self.server_state
        rules, stats = state.behaviour, state.stats
        gets = stats.arrived(not head)
        time.sleep(rules.latency)
        if not head:
            if rules.stall:
                state.release.wait(rules.stall)
                return self._empty(503, {}, head, stats)
            if rules.change_after is not None and gets >= rules.change_after:
                state.version = 1
        name = self.path.split("?", 1)[0].lstrip("/")
        if rules.redirect_loop:
            return self._empty(302, {"Location": self.path}, head, stats)
        if rules.failures:
            status = rules.failures.pop(0)
            extra = {"Retry-After": rules.retry_after} if rules.retry_after else {}
            return self._empty(status, extra, head, stats)
        if rules.forbidden and not self.headers.get("Authorization"):
            return self._empty(403, {}, head, stats)
        stored = state.files.get(name)
        if stored is None:
            return self._empty(404, {}, head, stats)
        if isinstance(stored, Path):  # a big file on disk: its size and mtime stand for it
            return self._from_disk(stored, head, stats)
        data = stored if state.version == 0 else stored[::-1]
        validators = self._validators(data, state.version)
        if self._precondition_failed(validators):
            return self._empty(412, {}, head, stats)
        asked = self.headers.get("Range")
        span = _span(asked, len(data)) if not rules.ignore_ranges and not head else None
        if span == UNSATISFIABLE:
            return self._empty(416, {"Content-Range": f"bytes */{len(data)}"}, head, stats)
        if span is not None:
            start, end = span
            body = data[start:end] + (b"x" * 100 if rules.longer else b"")
            headers = {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}", **validators}
            return self._send(206, body, headers, asked, head, stats)
        return self._send(200, data, validators, asked, head, stats)

    def _from_disk(self, path: Path, head: bool, stats: Stats) -> None:
        size = path.stat().st_size
        span = _span(self.headers.get("Range"), size)
        if span == UNSATISFIABLE:
            return self._empty(416, {"Content-Range": f"bytes */{size}"}, head, stats)
        start, end = span or (0, size)
        self.send_response(206 if span else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{size}-{path.stat().st_mtime_ns}"')
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not head:
            with path.open("rb") as source:
                source.seek(start)
                for offset in range(start, end, 2**22):
                    self.wfile.write(source.read(min(2**22, end - offset)))
        stats.count(0 if head else end - start, self.headers.get("Range"), not head)

    def _validators(self, data: bytes, version: int) -> dict[str, str]:
        rules = self.server_state.behaviour
        found = {}
        if rules.etag:
            found["ETag"] = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        if rules.last_modified:
            found["Last-Modified"] = formatdate(1_700_000_000 + version, usegmt=True)
        return found

    def _precondition_failed(self, validators: dict[str, str]) -> bool:
        match = self.headers.get("If-Match")
        if match is not None and match != validators.get("ETag"):
            return True
        since = self.headers.get("If-Unmodified-Since")
        return since is not None and since != validators.get("Last-Modified", since)

    def _empty(self, status: int, headers: dict[str, str], head: bool, stats: Stats) -> None:
        self._send(status, b"", headers, None, head, stats)

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], asked: str | None, head: bool,
        stats: Stats,
    ) -> None:  # fmt: skip
        truncate = self.server_state.behaviour.truncate and status in (200, 206) and not head
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in headers.items():
            self.send_header(key, value)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0 if head else len(body) // 2 if truncate else len(body)
        stats.count(sent, asked, not head)  # before the client can see the bytes
        if sent:
            self.wfile.write(body[:sent])
        if truncate:
            self.close_connection = True


SAMPLE_FILES = sorted(  # every sample checkpoint, served by name
    path for path in SAMPLES.iterdir() if path.is_file() and path.suffix not in (".py", ".md")
)


UNSATISFIABLE = (0, 0)


def _span(asked: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) of the bytes a Range header asks for, `bytes=A-B`, `bytes=A-` or the
    last N, `bytes=-N`; None without one; UNSATISFIABLE past the end (or of an empty file)."""
    match = RANGE.match(asked or "")
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    start = max(0, size - int(last)) if not first else int(first)
    end = size if not first or not last else min(int(last) + 1, size)
    return (start, end) if start < end else UNSATISFIABLE
