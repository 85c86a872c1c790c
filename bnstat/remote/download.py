"""A remote checkpoint fetched whole, for the commands that run or rewrite the file.

`recalibrate` copies the input before changing its statistics, and `--data` runs the
model, which needs every weight: both read a URL from a temporary copy. The copy is
made in pieces fetched in parallel (counted like any other read), lies in a temporary
folder that is removed afterwards (also on Ctrl-C and SIGTERM), and while it exists the
URL reads from it (`Known.local`), so the report still names the URL, not the copy. An
ONNX model's external-data files are fetched beside it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath

from bnstat.errors import CheckpointError
from bnstat.remote.file import PARALLEL, PIECE, RemoteFile
from bnstat.remote.url import RemoteUrl
from bnstat.termination import sigterm_raises


@contextmanager
def fetched_whole(urls: list[RemoteUrl]) -> Iterator[None]:
    """Within the block, each URL (and an ONNX model's side files) reads from a copy."""
    with ExitStack() as stack:
        stack.enter_context(sigterm_raises())
        for url in urls:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bnstat-")))
            for file, name in _with_side_files(url):
                _copy(file, folder / name)
                stack.callback(_forget, file)
        yield


def _with_side_files(url: RemoteUrl) -> Iterator[tuple[RemoteUrl, str]]:
    yield url, url.name or "checkpoint"
    from bnstat.readers.sniff import Container, sniff

    if sniff(url) is Container.ONNX:
        from bnstat.readers.onnx_model import external_data_files

        folder = str(url.parent) + "/"
        for side in sorted(external_data_files(url), key=str):
            relative = str(side).removeprefix(folder)
            if isinstance(side, RemoteUrl) and not PurePosixPath(relative).is_absolute():
                yield side, relative


def _copy(url: RemoteUrl, target: Path) -> None:
    """Write the URL's bytes to `target`, PARALLEL pieces at a time."""
    file = RemoteFile(url)
    free = shutil.disk_usage(target.parent).free
    if file.size > free:
        raise CheckpointError(
            f"{url}: {file.size} bytes do not fit in the {free} bytes free in {target.parent}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    step = PIECE * PARALLEL
    with target.open("wb") as out:
        for start in range(0, file.size, step):
            out.write(file.pread(start, min(step, file.size - start)))
    url.state.local = target


def _forget(url: RemoteUrl) -> None:
    url.state.local = None
