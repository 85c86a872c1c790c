"""Named points of a run, where a test can stop the process to send it a signal.

What a signal leaves behind depends on where it lands: during start-up, a pass over the
data with decoding workers alive, the verification, the write before or after the final
rename. Tests reach each of those points for certain, not by sleeping and hoping:
with `BNSTAT_PAUSE_AT=NAME` in its environment, a process that reaches a point whose
name starts with NAME says `bnstat: paused at NAME` on stderr and waits there until a
signal ends it. Without the variable, `reached` costs a dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time

VARIABLE = "BNSTAT_PAUSE_AT"
MARK = "bnstat: paused at "


def reached(name: str) -> None:
    """The run is at point `name`; pause here if the environment asks for it."""
    wanted = os.environ.get(VARIABLE)
    if not wanted or not name.startswith(wanted):
        return
    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"{MARK}{name}\n")
        stream.flush()
    while True:  # until a signal's handler raises (Ctrl-C, SIGTERM) or the signal kills
        time.sleep(3600)
