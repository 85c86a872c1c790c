"""What the filesystem libraries raise, as one line a user can act on.

Every package has its own exceptions (aiohttp, botocore, google-auth, azure-core,
huggingface_hub, fsspec's own); they are told apart here by class name and HTTP status,
walking the chain of causes, without importing any of them. A refused request names the
credential sources its package reads and which of them are set (never a value), and
every URL in a message is shown without its secrets.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator

from bnstat.errors import CheckpointError
from bnstat.remote.url import RemoteUrl, safe_text

RETRIED = {429, 500, 502, 503, 504}
CREDENTIALS = {
    "s3": ("AWS credentials", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"),
           "or ~/.aws/credentials"),
    "gs": ("Google credentials", ("GOOGLE_APPLICATION_CREDENTIALS",),
           "or `gcloud auth application-default login`"),
    "az": ("Azure credentials", ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY",
                                 "AZURE_STORAGE_SAS_TOKEN"), "or `az login`"),
    "hf": ("a Hugging Face token", ("HF_TOKEN",), "or `hf auth login`"),
}  # fmt: skip
_TIMEOUTS = {"TimeoutError", "ServerTimeoutError", "ReadTimeoutError", "ConnectTimeoutError",
             "ConnectTimeout", "ReadTimeout", "TimeoutException", "ServiceRequestTimeoutError",
             "ServiceResponseTimeoutError"}  # fmt: skip
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


class ChangedError(CheckpointError):
    """The file changed between two requests (its ETag or Last-Modified moved)."""


class RangesIgnored(Exception):
    """The server answered a range request with the whole file."""


def causes(err: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from or during, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(err: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(err).__mro__}


def status_of(err: BaseException) -> int | None:
    """The HTTP status an exception carries, in any of the libraries' ways."""
    for item in causes(err):
        for holder in (item, getattr(item, "response", None)):
            for attribute in ("status", "status_code"):
                value = getattr(holder, attribute, None)
                if isinstance(value, int) and 100 <= value < 600:
                    return value
        response = getattr(item, "response", None)
        if isinstance(response, dict):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def retryable(err: BaseException) -> bool:
    """Worth another try after a pause: 429 Too Many Requests or a 5xx."""
    return status_of(err) in RETRIED


def explain(err: BaseException, url: RemoteUrl) -> CheckpointError:
    """One line for what went wrong reading `url` (the caller adds the URL itself)."""
    if isinstance(err, CheckpointError):
        return err
    names = set().union(*(_names(item) for item in causes(err)))
    status = status_of(err)
    if "FileExpired" in names or status == 412:
        return ChangedError(changed_message())
    if "TooManyRedirects" in names:
        return CheckpointError("too many redirects: the server sends bnstat round in circles")
    if names & _TIMEOUTS:
        return CheckpointError(f"no answer within {url.options.timeout:g} s (--timeout)")
    if "ClientPayloadError" in names or "IncompleteReadError" in names:
        return CheckpointError("the server closed the connection mid-answer: truncated body")
    if "GatedRepoError" in names:  # the Hub lists a gated repository's files, sends none
        return CheckpointError(
            f"access denied{_http(status)}: a gated repository, whose conditions the token's "
            f"account must accept on the Hub: {credential_hint(url)}"
        )
    if "RepositoryNotFoundError" in names:  # the Hub hides a private one from strangers
        return CheckpointError(
            f"no such repository, or a private one{_http(status)}: {credential_hint(url)}"
        )
    if "RevisionNotFoundError" in names:
        return CheckpointError(f"no such revision in the repository{_http(status)}")
    if "NoCredentialsError" in names or status in (401, 403) or _errno(err) == errno.EACCES:
        return CheckpointError(f"access denied{_http(status)}: {credential_hint(url)}")
    if status == 404 or "FileNotFoundError" in names or "EntryNotFoundError" in names:
        return CheckpointError(f"not found{_http(status)}")
    if status in RETRIED:
        return CheckpointError(f"the server kept failing (HTTP {status}) after several tries")
    if "ClientConnectorError" in names or "EndpointConnectionError" in names:
        return CheckpointError(f"cannot connect: {scrub(str(err))[:200]}")
    return CheckpointError(f"cannot read: {type(err).__name__}: {scrub(str(err))[:200]}")


def changed_message() -> str:
    return "the file changed on the server while bnstat read it (its ETag or Last-Modified moved)"


def _http(status: int | None) -> str:
    return f" (HTTP {status})" if status else ""


def _errno(err: BaseException) -> int | None:
    return next((e.errno for e in causes(err) if isinstance(e, OSError)), None)


def credential_hint(url: RemoteUrl) -> str:
    """Where the scheme's package looks for credentials, and which of them are set."""
    if url.scheme not in CREDENTIALS:
        given = "@" in url.text.partition("://")[2].split("/", 1)[0] or "?" in url.text
        return (
            "the credentials in the URL were refused"
            if given
            else "the URL carries no credentials (user:password@ or a signed query string)"
        )
    what, variables, other = CREDENTIALS[url.scheme]
    present = [name for name in variables if os.environ.get(name)]
    state = f"{', '.join(present)} set" if present else "none of them is set"
    return f"bnstat uses {what} from {', '.join(variables)} {other} ({state})"


def scrub(text: str) -> str:
    """A message with every URL in it shown without credentials or query string."""
    return _URL.sub(lambda match: safe_text(match.group(0)), text)
