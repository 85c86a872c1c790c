"""The library: check, recalibrate and diagnose BatchNorm statistics from Python.

Three functions take what a PyTorch user holds (a checkpoint path, an `nn.Module`, a
state dict, a `DataLoader`) and give the results of the command line:

    report = bnstat.check(target)              # bnstat check
    result = bnstat.recalibrate(model, data)   # bnstat recalibrate, in memory
    report = bnstat.diagnose(model, data)      # bnstat check --data, in memory

They never print (a `BnstatWarning` goes through `warnings`; `progress=True` asks for a
bar on stderr), never exit, install no signal handler, and check their arguments as the
command line checks its flags (`TypeError`, or `ValueError` naming the argument).
Importing them is cheap: torch, numpy and the engine load when a function runs.
"""

from bnstat.api.check import check
from bnstat.api.diagnose import diagnose
from bnstat.api.recalibrate import recalibrate

__all__ = ["check", "diagnose", "recalibrate"]
