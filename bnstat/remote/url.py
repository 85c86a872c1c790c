"""URLs as checkpoint locations: parsed, shown without secrets, joined to siblings.

A presigned URL's query string and a `user:password@` in front of the host are secrets:
`str(url)` (what every report, message and baseline shows) leaves both out, and so does
`key`, which stays the same when a presigned URL is signed anew. The full text is only
ever handed to the filesystem library. A `RemoteUrl` walks like a `pathlib.Path` where
the readers need it to (`name`, `suffix`, `parent`, `/` for a shard beside its index),
and carries the request options and what has been fetched of it so far (`state`), so
that sniffing and reading share one set of requests and one count of their cost.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bnstat.remote.state import Cost, Known

SCHEMES = ("https", "http", "s3", "gs", "az", "hf")
LISTABLE = ("s3", "gs", "az", "hf")  # object stores and hubs: folders and globs; HTTP has none
DEFAULT_TIMEOUT = 30.0  # seconds a request may wait for the server
DEFAULT_MAX_DOWNLOAD = 256 * 2**20  # what a server that ignores ranges may make bnstat read
_URL_START = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+://")


@dataclass(frozen=True)
class RemoteOptions:
    """What every request obeys: `--timeout` and `--max-download`."""

    timeout: float = DEFAULT_TIMEOUT
    max_download: int = DEFAULT_MAX_DOWNLOAD


def scheme_of(text: str) -> str | None:
    """The scheme of a URL bnstat reads (`https`, `s3`, ...), else None (a local path)."""
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.lower() in SCHEMES else None


def looks_like_url(text: str) -> bool:
    """`scheme://...`: a URL, known or not, rather than a path (`C://` is a drive)."""
    return _URL_START.match(text) is not None


class RemoteUrl:
    """A checkpoint (or folder) at a URL; equal to another with the same full text."""

    def __init__(
        self, text: str, options: RemoteOptions | None = None, cost: Cost | None = None
    ) -> None:
        scheme = scheme_of(text)
        if scheme is None:
            raise ValueError(f"not a URL bnstat reads: {safe_text(text)}")
        self.text = text
        self.scheme = scheme
        self.options = options or RemoteOptions()
        self.state = Known(cost or Cost())

    def __str__(self) -> str:
        return safe_text(self.text)

    def __repr__(self) -> str:
        return f"RemoteUrl({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteUrl) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @property
    def key(self) -> str:
        """What a baseline records: the URL without credentials or query string."""
        return str(self)

    @property
    def path(self) -> str:
        """The path part, as the filesystem library addresses it (no scheme, no query)."""
        parts = urlsplit(self.text)
        if self.scheme in ("http", "https"):
            return urlunsplit(parts._replace(fragment=""))
        return f"{parts.netloc}{parts.path}".rstrip("/")

    @property
    def name(self) -> str:
        return urlsplit(self.text).path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def parent(self) -> RemoteUrl:
        """The folder holding this file: credentials kept, query string dropped (it signs
        this one object, not its neighbours)."""
        parts = urlsplit(self.text)
        folder = parts.path.rstrip("/").rsplit("/", 1)[0]
        text = urlunsplit((parts.scheme, parts.netloc, folder, "", ""))
        return RemoteUrl(text, self.options, self.state.cost)

    def __truediv__(self, name: str) -> RemoteUrl:
        """A file in this folder (its cost is counted with this URL's)."""
        parts = urlsplit(self.text)
        path = parts.path.rstrip("/") + "/" + name
        return RemoteUrl(urlunsplit((parts.scheme, parts.netloc, path, "", "")), self.options,
                         self.state.cost)  # fmt: skip

    def child(self, path: str) -> RemoteUrl:
        """A file a listing found, by its path in the filesystem (`bucket/dir/file`)."""
        return RemoteUrl(f"{self.scheme}://{path.lstrip('/')}", self.options)

    def resolve(self) -> RemoteUrl:
        """A URL is already absolute (as `Path.resolve` makes a path)."""
        return self

    @property
    def has_glob(self) -> bool:
        """Whether the path holds a glob pattern (object stores only: in an HTTP URL `?`
        starts the query)."""
        return self.scheme in LISTABLE and glob.has_magic(urlsplit(self.text).path)


def safe_text(text: str) -> str:
    """A URL without `user:password@`, query string or fragment: safe to print."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<malformed URL>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
