"""TorchScript code written to make the graph walk expensive: the walk gives up, bounded.

What follows each layer is found by following values through the archive's code. Code
can make that blow up: a module that holds a module of its own class (an endless tree of
paths) and calls it thousands of times (thousands of call chains to every layer). The
walks share one step budget per archive; past it the followers stay unknown and the file
is reported as any other.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from hardening_helpers import SAMPLES

from bnstat.analysis import analyze_file
from bnstat.settings import Settings

CALLS = 3000


def self_calling(target: Path) -> Path:
    """scripted.pt whose root class holds itself as `again` and calls it CALLS times."""
    with zipfile.ZipFile(SAMPLES / "scripted.pt") as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".py") and b"class DigitsNet" in data:
                text = data.decode()
                own = re.search(r"def forward\(self: (__torch__\.[\w.]+DigitsNet)", text)
                assert own is not None
                text = text.replace("  relu : ", f"  again : {own.group(1)}\n  relu : ", 1)
                calls = "".join(f"    x{i} = (again).forward(x, )\n" for i in range(CALLS))
                text = text.replace(
                    "    relu = self.relu\n",
                    f"    again = self.again\n{calls}    relu = self.relu\n",
                    1,
                )
                data = text.encode()
            out.writestr(info, data)
    return target


def test_a_module_that_calls_itself_thousands_of_times(tmp_path):
    (entry,) = analyze_file(self_calling(tmp_path / "again.pt"), Settings())
    assert entry.error is None and len(entry.layers) == 7
    assert entry.findings == ()
