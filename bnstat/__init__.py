"""bnstat: inspect, gate and recalibrate the BatchNorm statistics inside checkpoints.

The library's three functions (`bnstat.api`): `check(target)`, `recalibrate(model,
data)` and `diagnose(model, data)`. Importing the package loads neither torch nor numpy.

`bnstat.recalibrate` is also the name of the subpackage of the estimators: importing it
would make the name the subpackage, so the package keeps its function (`_Package`),
while `import bnstat.recalibrate.estimator` and its kin work as ever (through
`sys.modules`).
"""

import sys
import types
from typing import Any

from bnstat.api import check, diagnose, recalibrate
from bnstat.version import __version__

__all__ = ["__version__", "check", "diagnose", "recalibrate"]


class _Package(types.ModuleType):
    """The package module, whose public functions a submodule import does not replace."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
