"""A child process that file permissions stop, whoever runs the tests.

Tests of permission faults (a data folder that cannot be listed, an output folder that
cannot be written) must meet the fault in CI too, which runs as root, whom permission
bits do not stop. A child started with `unprivileged` as its `preexec_fn` drops from its
capability bounding set the two capabilities that let root pass them (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH), so the program it runs never has them; it stays root otherwise,
and still reads the checkout and its own files.
"""

from __future__ import annotations

import ctypes
import os

PR_CAPBSET_DROP = 24  # linux/prctl.h
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # linux/capability.h


def unprivileged() -> None:
    """For a child: permission bits apply to it, even as root (Linux)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")
