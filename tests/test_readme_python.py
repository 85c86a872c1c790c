"""The README's Python section runs: its first block from the repository root, and each
recipe for the end of SWA/EMA training in the loop or trainer it is written for, scored
against hooks on the eager model (`reference.violations`)."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import torch
from reference import first, violations
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from zoo import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Python library") : README.index("## Install")]
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, re.S)


def recipe(marker: str) -> str:
    (found,) = [block for block in BLOCKS if marker in block]
    return found


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip


def images() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(64, 3, 12, 12, generator=generator) * 2 + 0.5
    return TensorDataset(pixels, torch.randint(0, 3, (64,), generator=generator))


def test_the_first_block_runs_from_the_repository_root():
    run = subprocess.run(
        [sys.executable, "-c", BLOCKS[0]], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "[('BN004', 'block1.bn1', (0, 1))] passed"
    assert lines[1] == "[('BN003', '1'), ('BN014', '1')]"
    assert lines[2].startswith("segmented") and lines[3] == "()"
    assert run.stderr == ""


def test_the_averaged_model_recipe():
    model, loader = small_cnn(), DataLoader(images(), batch_size=16, shuffle=True)
    namespace: dict[str, Any] = {"model": model, "loader": loader}
    exec(recipe("get_ema_multi_avg_fn"), namespace)
    ema = namespace["ema"]
    assert violations(ema.module, DataLoader(images(), batch_size=64), first) == []


@pytest.mark.slow
def test_the_lightning_callback_recipe(tmp_path):
    lightning = pytest.importorskip("lightning")
    namespace: dict[str, Any] = {}
    exec(recipe("L.Callback"), namespace)

    class Classifier(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = small_cnn()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)  # type: ignore[no-any-return]

        def training_step(self, batch: Any, _index: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    classifier = Classifier()
    swa = lightning.pytorch.callbacks.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1)
    trainer = lightning.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[swa, namespace["RecalibrateBatchNorm"]()],
    )  # fmt: skip
    trainer.fit(classifier, DataLoader(images(), batch_size=16, shuffle=True))
    assert violations(classifier, DataLoader(images(), batch_size=64), first) == []


@pytest.mark.slow
def test_the_hugging_face_callback_recipe(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    namespace: dict[str, Any] = {}
    exec(recipe("TrainerCallback"), namespace)
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
        layer_type="basic", num_labels=3,
    )  # fmt: skip
    model = transformers.ResNetForImageClassification(config)
    pixels, labels = images().tensors
    samples = [{"pixel_values": p, "labels": int(y)} for p, y in zip(pixels, labels, strict=True)]
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=16, use_cpu=True,
        report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=arguments, train_dataset=samples,
        callbacks=[namespace["RecalibrateBatchNorm"]()],
    )  # fmt: skip
    trainer.train()
    batches = DataLoader(pixels, batch_size=64)
    assert violations(model, batches, lambda m, b: m(pixel_values=b)) == []
