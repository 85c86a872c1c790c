"""A small residual CNN for the 1x8x8 grayscale digits of scikit-learn's `load_digits()`.

This is the architecture behind every sample checkpoint in this folder (except
`no_batchnorm.safetensors`). It has seven BatchNorm layers, so it exercises bnstat's
rules on a realistic, if tiny, model:

    stem        conv3x3(1->16)   -> stem.bn (BatchNorm2d 16) -> ReLU         8x8
    block1      residual block, 16 channels: block1.bn1, block1.bn2         8x8
    block2      residual block, 16->24, stride 2: block2.bn1, block2.bn2,   4x4
                and a projection shortcut conv1x1 -> block2.shortcut.bn
    pool        global average pool                                         24
    fc          Linear(24->64) -> fc_bn (BatchNorm1d 64) -> ReLU -> Dropout(0.2)
    classifier  Linear(64->num_classes)

Inputs are float32 tensors of shape (N, 1, 8, 8) with values in 0..1 (a PNG's uint8
pixels divided by 255). Dropout and BatchNorm make `train()` and `eval()` behave
differently, as in any real model. Convolutions are initialised as in torchvision's
ResNet (Kaiming normal, fan-out, ReLU gain); BatchNorm layers start at weight 1, bias 0.

It imports only torch, so bnstat can build it with
`--arch sample_checkpoints/digits_model.py:build_model`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """A bias-free convolution followed by BatchNorm2d (named `conv` and `bn`)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels)))


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with a skip connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = conv_bn(in_channels, out_channels, 1, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class DigitsNet(nn.Module):
    """Stem, two residual blocks, global pooling and a BatchNorm1d head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16, 3)
        self.relu = nn.ReLU()
        self.block1 = ResidualBlock(16, 16)
        self.block2 = ResidualBlock(16, 24, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 64, bias=False)
        self.fc_bn = nn.BatchNorm1d(64)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        x = self.block2(self.block1(x))
        x = torch.flatten(self.pool(x), 1)
        x = self.dropout(self.relu(self.fc_bn(self.fc(x))))
        return self.classifier(x)


def build_model(num_classes: int = 10) -> nn.Module:
    """A freshly initialised `DigitsNet` (call `load_state_dict` to use a checkpoint)."""
    return DigitsNet(num_classes)
