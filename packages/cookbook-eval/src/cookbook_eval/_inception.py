"""InceptionV3 up to its 2048-d pool3 features, with the pooling of the TensorFlow graph FID is defined on.

The network is torchvision's ``inception_v3`` (no auxiliary head, the classifier replaced by the identity).
The FID reference graph (the 2015-12-05 TensorFlow Inception) differs from torchvision's layer definitions
in its pooling only: the 3x3 average pools inside the Inception blocks ignore the zero padding (they divide
by the number of real pixels under the window, 4 at a corner, 6 on an edge), and the last block (Mixed_7c)
max-pools in its pool branch. ``tf_pooling=True`` reproduces that, so weights converted from that graph give
its features; the parameters are the same either way.

The averaging change needs no new forward code: an average that leaves the padding out equals the one that
counts it times 9 / (pixels under the window), a fixed map per position, applied by a forward pre-hook on the
branch's 1x1 convolution (hooks leave the state_dict's keys as torchvision names them). The max pool needs
the block's input, so Mixed_7c gets a subclass with its own ``_forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE, inception_v3

POOL3_DIM = 2048


def _exclude_padding(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor]:
    """Forward pre-hook of a pool branch's projection: turn the padded 3x3 average it receives (padding
    counted) into one that leaves the padding out, by scaling each position by 9 / (pixels under the window)."""
    (pooled,) = args
    ones = torch.ones(1, 1, pooled.shape[2], pooled.shape[3], dtype=pooled.dtype, device=pooled.device)
    counts = F.avg_pool2d(ones, kernel_size=3, stride=1, padding=1, count_include_pad=True) * 9
    return (pooled * (9 / counts),)


class _MaxPoolE(InceptionE):  # type: ignore[misc]
    """InceptionE whose pool branch max-pools (the last block of the TensorFlow graph)."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        outputs: list[Tensor] = super()._forward(x)
        outputs[-1] = self.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))
        return outputs


def _use_tf_pooling(model: Inception3) -> None:
    for name, block in model.named_children():
        if isinstance(block, InceptionA | InceptionC) or (isinstance(block, InceptionE) and name != "Mixed_7c"):
            block.branch_pool.register_forward_pre_hook(_exclude_padding)
        elif name == "Mixed_7c" and isinstance(block, InceptionE):
            block.__class__ = _MaxPoolE


def build_inception(tf_pooling: bool = True) -> Inception3:
    """InceptionV3 returning (N, 2048) pool3 features for (N, 3, H, W) inputs in [-1, 1], H, W >= 75.

    Parameters are left uninitialised: load a state_dict or initialise them (see ``features``).
    """
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    model.fc = nn.Identity()
    if tf_pooling:
        _use_tf_pooling(model)
    return model
