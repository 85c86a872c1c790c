"""The words for a temporary folder that cannot take spilled activations.

A real full tmpfs is met in tests/hardening/test_hardening_faults.py (where the tests may
mount one); here every errno the cache's writes can meet gets its message.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from bnstat.errors import TemporaryFolderError
from bnstat.execution.resources import temporary_folder
from bnstat.execution.spill_errors import spill_failed


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_folder_is_named_with_what_to_do(code: int) -> None:
    error = spill_failed(OSError(code, "No space left on device"), Path("/scratch/bnstat-cache-x"))
    assert isinstance(error, TemporaryFolderError)
    assert str(error) == (  # the library names its arguments; the command line, its flags
        "the temporary folder /scratch is full (No space left on device) while spilling "
        "activations: keep more in memory before spilling (cache_mb), point TMPDIR at a "
        "folder with more room, or use fewer samples (max_samples)"
    )
    assert "(--cache-mb)" in error.named(lambda name: "--" + name.replace("_", "-"))


def test_another_failure_says_where_and_what_to_do() -> None:
    error = spill_failed(OSError(errno.EROFS, "Read-only file system"))
    assert str(error) == (
        f"cannot spill activations to the temporary folder {temporary_folder()} (Read-only "
        "file system): point TMPDIR at a writable folder with room, or keep more in memory "
        "(cache_mb)"
    )
