"""A model hub on 127.0.0.1 for the `hf://` tests: the endpoints huggingface_hub's
`HfFileSystem` calls (repository info, tree, paths-info, resolve with Range), answered
the way the Hub answers them, errors included (the `X-Error-Code` header), and with
its access rules: a private repository is hidden without the right token (401, as the
Hub cannot say "exists" to a stranger), a gated one lists its files but refuses to send
them (401 without a token, 403 with one it has not granted). Requests, body bytes and
the file requests in flight together are counted; `latency` delays each file's answer.
Point huggingface_hub at it with `HF_ENDPOINT`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "hf_testtokenthatmustneverbeprinted"
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_API = re.compile(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?$")
_RESOLVE = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class Repo:
    """Commits (id -> files, path -> bytes) and the branches and tags that name them."""

    def __init__(self, access: str = "public") -> None:
        self.access = access  # or "private" (needs TOKEN) or "gated" (files refused)
        self.commits: dict[str, dict[str, bytes]] = {}
        self.refs: dict[str, str] = {}
        self.move: tuple[int, str, str] | None = None  # after N file requests, ref -> commit

    def commit(self, files: dict[str, bytes], *names: str) -> str:
        """Record `files` as a commit and point `names` (branches, tags) at it."""
        sha = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self.commits[sha] = files
        self.refs.update(dict.fromkeys(names, sha))
        return sha

    def resolve(self, revision: str) -> str | None:
        """The commit a branch, a tag or a commit id names, or None."""
        return revision if revision in self.commits else self.refs.get(revision)


class Counts:
    """Requests, the bytes of files sent, the revisions files were asked at, and the most
    file requests answered at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.sent = 0
        self.revisions: list[str] = []
        self.in_flight = 0
        self.peak = 0

    @contextmanager
    def answering(self) -> Iterator[None]:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def add(self, sent: int) -> None:
        with self.lock:
            self.requests += 1
            self.sent += sent

    def resolved(self, revision: str) -> None:
        with self.lock:
            self.revisions.append(revision)


class Hub:
    """Serves `repos` (ORG/NAME -> Repo) at `endpoint`."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.counts = Counts()
        self.latency = 0.0  # seconds before a file's answer: requests in flight overlap
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: Hub

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        self._route(head=False, paths=form.get("paths", []))

    def _route(self, head: bool, paths: list[str] | None = None) -> None:
        path = unquote(urlsplit(self.path).path)
        if api := _API.match(path):
            repo_id, kind, revision, inner = api.groups()
            return self._api(repo_id, kind, revision or "main", (inner or "").strip("/"), paths)
        if resolve := _RESOLVE.match(path):
            return self._resolve(*resolve.groups(), head=head)
        self._error(404, "", "no such endpoint")

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def _commit(self, repo_id: str, revision: str) -> tuple[Repo, str] | None:
        """The repository and the commit `revision` names, or None after answering an error."""
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.access == "private" and not self._authorized()):
            status = 404 if self.headers.get("Authorization") else 401
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, sha

    def _api(
        self, repo_id: str, kind: str | None, revision: str, inner: str, paths: list[str] | None
    ) -> None:
        found = self._commit(repo_id, revision)
        if found is None:
            return
        repo, sha = found
        tree = _tree(repo.commits[sha])
        if kind in (None, "revision"):
            files = [{"rfilename": p} for p, entry in tree.items() if entry["type"] == "file"]
            private, gated = repo.access == "private", repo.access == "gated"
            info = {
                "id": repo_id,
                "sha": sha,
                "siblings": files,
                "private": private,
                "gated": gated,
            }
            return self._json(info)
        if kind == "paths-info":
            return self._json([tree[p] for p in paths or [] if p in tree])
        if inner and tree.get(inner, {}).get("type") != "directory":
            return self._error(404, "EntryNotFound", f"{inner} does not exist on {revision}")
        recursive = parse_qs(urlsplit(self.path).query).get("recursive") == ["true"]
        prefix = inner + "/" if inner else ""
        self._json([entry for p, entry in tree.items() if p.startswith(prefix)
                    and (recursive or "/" not in p[len(prefix):])])  # fmt: skip

    def _resolve(self, repo_id: str, revision: str, name: str, head: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is not None and repo.move and len(self.hub.counts.revisions) >= repo.move[0]:
            repo.refs[repo.move[1]] = repo.move[2]  # a push lands while the client reads
        found = self._commit(repo_id, revision)
        if found is None:
            return
        repo, sha = found
        if repo.access == "gated" and not self._authorized():
            status = 403 if self.headers.get("Authorization") else 401
            return self._error(status, "GatedRepo", f"Access to model {repo_id} is restricted")
        data = repo.commits[sha].get(name)
        if data is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist on {revision}")
        self.hub.counts.resolved(revision)
        headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": sha}
        match = RANGE.match(self.headers.get("Range") or "")
        with self.hub.counts.answering():
            time.sleep(self.hub.latency)
            if match and not head:
                start = int(match.group(1))
                end = min(int(match.group(2)) + 1 if match.group(2) else len(data), len(data))
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
                return self._send(206, data[start:end], headers, sent=end - start)
            body, sent = (b"", 0) if head else (data, len(data))
            self._send(200, body, headers, length=len(data), sent=sent)

    def _json(self, value: object) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, message: str) -> None:
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], length: int | None = None,
        sent: int = 0,
    ) -> None:  # fmt: skip
        """Answer; `sent` counts the bytes of a file in the body (not of JSON or errors)."""
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.hub.counts.add(sent)
        self.wfile.write(body)


def _tree(files: dict[str, bytes]) -> dict[str, dict[str, object]]:
    """Every file and folder of a commit, as the tree endpoint describes them, sorted."""
    tree: dict[str, dict[str, object]] = {}
    for name, data in sorted(files.items()):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            tree.setdefault(folder, {"type": "directory", "path": folder,
                                     "oid": hashlib.sha1(folder.encode()).hexdigest()})  # fmt: skip
        tree[name] = {"type": "file", "path": name, "size": len(data),
                      "oid": hashlib.sha1(data).hexdigest()}  # fmt: skip
    return dict(sorted(tree.items()))
