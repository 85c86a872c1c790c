"""A ResNet-50-shaped network written here (no torchvision): bottleneck blocks, 53 BatchNorm2d.

The shape of the most common vision backbone, at a chosen width: a 7x7 stem with
BatchNorm and max pooling, then four stages of bottleneck blocks (1x1, 3x3, 1x1
convolutions, each followed by BatchNorm, ReLU in place and a residual `+=`), the first
block of each stage with a projection shortcut (1x1 convolution + BatchNorm) that runs
beside the main branch. `build_resnet()` is ResNet-50's depth ([3, 4, 6, 3] blocks, 53
BatchNorm layers) at half width; smaller `blocks` give quick test models of the same
kind. It imports only torch, so bnstat can build it with
`--arch benchmarks/resnet_model.py:build_resnet`.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        stages, channels = [], width
        for index, count in enumerate(blocks):
            planes = width * 2**index
            stage = []
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                stage.append(Bottleneck(channels, planes, stride))
                channels = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.pool(x), 1))  # type: ignore[no-any-return]


def build_resnet(
    blocks: tuple[int, ...] = (3, 4, 6, 3), width: int = 32, num_classes: int = 10
) -> nn.Module:
    """ResNet-50's layout at `width` channels in the stem (64 in the original)."""
    return ResNet(tuple(blocks), width, num_classes)
