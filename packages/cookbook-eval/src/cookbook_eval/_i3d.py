"""I3D: Inception-v1 with batch normalisation, inflated to 3-D (Carreira & Zisserman, CVPR 2017).

Written from the paper's description (its Figure 3): every 2-D k x k filter of Inception-v1 becomes a
k x k x k filter (the first convolution 7 x 7 x 7 with stride 2 in time and space); the first two max-pools
do not pool time (1 x 3 x 3, stride 1, 2, 2); the pool before the last two Inception blocks is 2 x 2 x 2 with
stride 2; the end is a 2 x 7 x 7 average pool and a 1 x 1 x 1 convolution giving the class logits, averaged
over the remaining time steps. Each convolution but the last is followed by batch normalisation and a ReLU;
padding is "same" (as the original TensorFlow model: for stride 2 the extra row goes after). The input is
(batch, 3, frames, height, width) RGB scaled to [-1, 1]; the Kinetics-400 model gives 400 logits, the
features FVD uses.

Parameter names (for converting published weights into a state_dict this module loads)::

    conv1a.conv.weight, conv1a.bn.{weight,bias,running_mean,running_var}     Conv3d_1a_7x7
    conv2b.*, conv2c.*                                                        Conv3d_2b_1x1, Conv3d_2c_3x3
    mixed_3b … mixed_5c . branch0 | branch1_reduce | branch1 | branch2_reduce | branch2 | branch3 . conv|bn
    logits.weight, logits.bias                                                Conv3d_0c_1x1

Inputs smaller than 224 x 224 x 16 work too (the final average pool shrinks to what is left), which the
tests use to stay fast on CPU; features of such inputs are not comparable with 224 x 224 ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KINETICS_CLASSES = 400

INCEPTION_BLOCKS: dict[str, tuple[int, int, int, int, int, int]] = {
    # name: (1x1, 3x3 reduce, 3x3, second 3x3 reduce, second 3x3, pool projection) output channels
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}
"""Inception-v1's block widths (Szegedy et al. 2015, Table 1), kept by I3D."""

Triple = tuple[int, int, int]


def _same_padding(size: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """F.pad amounts (last dimension first) that make a convolution's output ceil(size / stride) long."""
    pads: list[int] = []
    for length, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max((math.ceil(length / s) - 1) * s + k - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3d(nn.Module):
    """Convolution (no bias), batch normalisation, ReLU, with "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel != (1, 1, 1) or self.stride != (1, 1, 1):
            x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        return F.relu(self.bn(self.conv(x)))


class MaxPool3dSame(nn.Module):
    """Max pool with "same" padding. Its inputs follow a ReLU, so zero padding never wins the max."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated: 1x1x1; 1x1x1 then 3x3x3; 1x1x1 then 3x3x3; 3x3x3 max pool then 1x1x1."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1_reduce, b1, b2_reduce, b2, b3 = widths
        self.branch0 = Unit3d(in_channels, b0)
        self.branch1_reduce = Unit3d(in_channels, b1_reduce)
        self.branch1 = Unit3d(b1_reduce, b1, (3, 3, 3))
        self.branch2_reduce = Unit3d(in_channels, b2_reduce)
        self.branch2 = Unit3d(b2_reduce, b2, (3, 3, 3))
        self.pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.branch3 = Unit3d(in_channels, b3)
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch0(x),
                self.branch1(self.branch1_reduce(x)),
                self.branch2(self.branch2_reduce(x)),
                self.branch3(self.pool(x)),
            ],
            dim=1,
        )


class I3D(nn.Module):
    """The RGB stream of I3D; ``forward`` maps (B, 3, T, H, W) in [-1, 1] to (B, num_classes) logits."""

    def __init__(self, num_classes: int = KINETICS_CLASSES, dropout: float = 0.5):
        super().__init__()
        self.conv1a = Unit3d(3, 64, (7, 7, 7), (2, 2, 2))
        self.pool2a = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.conv2b = Unit3d(64, 64)
        self.conv2c = Unit3d(64, 192, (3, 3, 3))
        self.pool3a = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        blocks: dict[str, nn.Module] = {}
        for name, widths in INCEPTION_BLOCKS.items():
            if name == "mixed_4b":
                blocks["pool4a"] = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            elif name == "mixed_5b":
                blocks["pool5a"] = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionBlock(channels, widths)
            blocks[name] = block
            channels = block.out_channels
        self.blocks = nn.Sequential()
        for name, module in blocks.items():
            self.blocks.add_module(name, module)
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Conv3d(channels, num_classes, kernel_size=1, bias=True)
        self.feature_channels = channels

    def trunk(self, x: Tensor) -> Tensor:
        """Activations of the last Inception block, (B, 1024, T/8, H/32, W/32)."""
        x = self.pool2a(self.conv1a(x))
        x = self.pool3a(self.conv2c(self.conv2b(x)))
        out: Tensor = self.blocks(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        x = self.trunk(x)
        kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        x = F.avg_pool3d(x, kernel, stride=1)
        x = self.logits(self.dropout(x))
        return x.mean(dim=(2, 3, 4))
