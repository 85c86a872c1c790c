"""Named points of a run, where a test can stop the process to send it a signal.

What a signal leaves behind depends on where it lands: during start-up, a pass over the
data with decoding workers alive, the verification, the write before or after the final
rename. Tests reach each of those points for certain, not by sleeping and hoping:
with `BNSTAT_PAUSE_AT=NAME` in its environment, a process that reaches a point whose
name starts with NAME says `bnstat: paused at NAME` on stderr and waits there until a
signal ends it, or SIGUSR1 lets it go on (a test changes the world meanwhile: fills the
temporary folder, say). Without the variable, `reached` costs a dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import time

VARIABLE = "BNSTAT_PAUSE_AT"
MARK = "bnstat: paused at "


def reached(name: str) -> None:
    """The run is at point `name`; pause here if the environment asks for it."""
    wanted = os.environ.get(VARIABLE)
    if not wanted or not name.startswith(wanted):
        return
    previous = signal.signal(signal.SIGUSR1, _go_on)  # before anyone is told to send it
    try:
        stream = sys.__stderr__
        if stream is not None:
            stream.write(f"{MARK}{name}\n")
            stream.flush()
        while True:  # until a signal's handler raises (Ctrl-C, SIGTERM, SIGUSR1) or kills
            time.sleep(3600)
    except _GoOn:
        pass
    finally:
        signal.signal(signal.SIGUSR1, previous)


class _GoOn(Exception):
    """SIGUSR1 at a pause: the run goes on."""


def _go_on(signum: int, frame: object) -> None:
    raise _GoOn
