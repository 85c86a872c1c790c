"""bnstat: inspect, gate and recalibrate the BatchNorm statistics inside checkpoints.

The library API (no torch needed for inspection):

    from pathlib import Path
    from bnstat.analysis import analyze
    from bnstat.settings import Settings

    report = analyze([Path("model.safetensors")], Settings())
    for finding in report.findings:
        print(finding.rule, finding.layer, finding.message)
"""

__version__ = "0.1.0"
