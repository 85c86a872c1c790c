"""bnstat as a library, end to end: check a model, see its statistics fail on data, fix them.

A small CNN is trained for a few steps beside its `AveragedModel` (SWA), which ends with
averaged weights and the statistics of the last model: nothing a check of the numbers
alone can see, but they do not fit what the averaged layers receive. bnstat checks,
diagnoses and recalibrates it in memory, on a shuffling DataLoader of (images, labels),
then on dicts through a call_fn. Run it from anywhere:
`python examples/library.py`; CI runs it, and `mypy --strict` checks it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, TensorDataset

import bnstat


def build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def main() -> None:
    torch.manual_seed(0)
    images, labels = torch.rand(512, 3, 16, 16) * 2 + 0.5, torch.randint(0, 10, (512,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True)

    model = build()
    averaged = AveragedModel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        torch.autograd.backward(nn.functional.cross_entropy(model(x), y))
        optimizer.step()
        averaged.update_parameters(model)
        if step == 3:
            break

    report = bnstat.check(averaged)  # the stored numbers alone look healthy
    print(f"check: {len(report.findings)} findings, {report.verdict.value}")

    diagnosis = bnstat.diagnose(averaged, loader, fail_on="warning")
    for finding in diagnosis.findings:
        print(f"diagnose: {finding.rule} {finding.layer}: {finding.message}")
    assert diagnosis.verdict.value == "failed"

    result = bnstat.recalibrate(averaged, loader)  # in place, eval-consistent
    print(f"{result.strategy}; largest eval-mode mismatch {result.consistency:.1e}")
    assert result.consistency is not None and result.consistency < 1e-4

    dicts = [{"pixels": x, "label": y} for x, y in loader]
    again = bnstat.recalibrate(
        averaged, dicts, call_fn=lambda net, batch: net(batch["pixels"]), verify=False
    )
    print(f"from dicts through call_fn: {again.samples} samples, {again.strategy}")
    assert not bnstat.diagnose(averaged, loader).findings


if __name__ == "__main__":
    main()
