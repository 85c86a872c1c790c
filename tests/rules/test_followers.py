"""BN004 and BN010 say what actually follows each layer where the file holds the graph.

One small model puts a BatchNorm layer before each kind of follower (a ReLU, a SiLU, a
residual add, a convolution, the model's output), with the same dead and dormant
channels planted in every layer. It is written the four ways that keep a graph
(`torch.jit.script`, `torch.jit.trace`, `torch.export`, `torch.onnx.export`) and as a
state dict, which keeps none.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from bnstat.analysis import analyze_file
from bnstat.report.inspection import CheckpointReport
from bnstat.settings import Settings

LAYERS = ("bn_relu", "bn_silu", "bn_add", "bn_conv", "bn_out")


class Followers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(6))
        self.bn_relu, self.bn_silu, self.bn_add, self.bn_conv, self.bn_out = (
            nn.BatchNorm2d(4) for _ in LAYERS
        )
        self.relu, self.silu = nn.ReLU(), nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_relu(self.conv[0](x)))
        x = self.silu(self.bn_silu(self.conv[1](x)))
        x = self.bn_add(self.conv[2](x)) + x
        x = self.conv[4](self.bn_conv(self.conv[3](x)))
        return self.bn_out(self.conv[5](x))


def planted() -> nn.Module:
    """Channel 0 dead with bias <= 0, channel 1 dead with bias > 0, channel 2 dormant."""
    torch.manual_seed(0)
    model = Followers()
    with torch.no_grad():
        for name in LAYERS:
            bn = getattr(model, name)
            bn.weight.copy_(torch.tensor([0.0, 0.0, 0.2, 1.1]))
            bn.bias.copy_(torch.tensor([-0.5, 0.5, -1.0, 0.1]))
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(10)
    return model.eval()


EXAMPLE = torch.randn(2, 4, 6, 6)


def write(kind: str, folder: Path) -> Path:
    model = planted()
    path = folder / f"model.{kind}"
    if kind == "scripted":
        torch.jit.script(model).save(str(path))
    elif kind == "traced":
        torch.jit.trace(model, EXAMPLE).save(str(path))
    elif kind == "pt2":
        torch.export.save(torch.export.export(model, (EXAMPLE,)), path)
    elif kind == "onnx":
        pytest.importorskip("onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (EXAMPLE,), path, dynamo=False, do_constant_folding=False)
    else:
        torch.save(model.state_dict(), path)
    return path


def messages(entry: CheckpointReport, rule: str) -> dict[str, str]:
    """Layer (its module path, also for ONNX node names) -> the rule's message there."""
    found = {}
    for finding in entry.findings:
        if finding.rule == rule and finding.layer is not None:
            layer = finding.layer.strip("/").removesuffix("/BatchNormalization")
            found[layer.replace("/", ".")] = finding.message
    return found


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("kind", ["scripted", "traced", "pt2", "onnx"])
def test_findings_say_what_follows_each_layer(tmp_path, kind):
    (entry,) = analyze_file(write(kind, tmp_path), Settings())
    dead, dormant = messages(entry, "BN004"), messages(entry, "BN010")
    assert set(dead) == set(LAYERS)
    assert dead["bn_relu"].endswith(
        "a ReLU follows, so they are always zero in [0] (bias <= 0) and a constant in [1] "
        "(bias > 0)"
    )
    assert dead["bn_silu"].endswith("a SiLU follows, so they are the constant SiLU(bias)")
    assert dead["bn_add"].endswith(
        "a residual add follows, so they are a constant offset in the sum"
    )
    conv = dead["bn_conv"].rsplit(": ", 1)[-1]
    assert conv in {
        f"{op} follows and receives them as a constant" for op in ("Conv", "conv2d", "Conv2d")
    }
    assert dead["bn_out"].endswith("the model outputs them as they are: a constant")
    # a shift far below zero matters only where a gate or an add follows
    assert set(dormant) == {"bn_relu", "bn_silu", "bn_add"}
    assert "a ReLU follows, which passes fewer than ~0.1% of its inputs" in dormant["bn_relu"]
    assert "a SiLU follows, which maps all but ~0.1%" in dormant["bn_silu"]
    assert "a residual add follows" in dormant["bn_add"]


def test_a_state_dict_keeps_the_conditional_phrasing(tmp_path):
    (entry,) = analyze_file(write("pt", tmp_path), Settings())
    dead, dormant = messages(entry, "BN004"), messages(entry, "BN010")
    assert set(dead) == set(dormant) == set(LAYERS)
    for layer in LAYERS:
        assert dead[layer].endswith(
            "bias <= 0 in [0]: always zero behind a ReLU; bias > 0 in [1]: a constant offset"
        )
        assert dormant[layer].endswith("behind a ReLU it passes fewer than ~0.1% of inputs")


def test_code_that_does_not_parse_leaves_followers_unknown(tmp_path):
    """The graph comes from parsing the archive's code; a member that is not Python only
    makes the messages conditional again."""
    source = write("scripted", tmp_path)
    broken = tmp_path / "broken.pt"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(broken, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith(".py") and b"class Followers" in data:
                data = data.replace(b"def forward(", b"def forward((")
            copy.writestr(info, data)
    (entry,) = analyze_file(broken, Settings())
    assert {layer.eps_from_file for layer in entry.layers} == {True}  # constants still read
    for message in messages(entry, "BN004").values():
        assert message.endswith("bias > 0 in [1]: a constant offset")
