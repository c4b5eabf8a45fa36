"""The vision towers' attention in a few batched calls instead of one call per window.

Qwen2.5-VL's vision encoder attends within windows of 8x8 patches (and, in 4 of its 32 layers, within each
2-frame step); Qwen3-VL's within each 2-frame step. Under transformers' ``sdpa`` attention, the only one
available without the flash-attn package, each window is a separate ``scaled_dot_product_attention`` call
from a Python loop: a 5 s 720p clip at the reward recipe's budget has hundreds of windows in each of the 28
windowed layers, so one clip costs over ten thousand small calls, and a batch of clips that many times more.
The GPU then waits on Python and kernel launches, and batching clips does not make a clip cheaper.

Windows of equal length are independent problems of the same shape, so here they are stacked and attended in
one call per distinct length (a handful per batch). The arithmetic per window is the same; the outputs equal
the per-window loop's to float rounding (the tests compare both). Only models loaded with ``sdpa`` are
changed, and only their vision attention modules (instance by instance, never transformers' classes).
"""

from __future__ import annotations

import functools
import itertools
import sys
import types
from typing import Any

VISION_ATTENTION_CLASSES = frozenset({"Qwen2_5_VLVisionAttention", "Qwen3VLVisionAttention"})


def _window_starts(cu_seqlens: Any) -> dict[int, list[int]]:
    """Start positions of the windows, grouped by window length."""
    bounds = cu_seqlens.tolist()
    groups: dict[int, list[int]] = {}
    for start, end in itertools.pairwise(bounds):
        if end > start:
            groups.setdefault(end - start, []).append(start)
    return groups


class _WindowGroups:
    """The windows of the last ``cu_seqlens`` a tower passed to its layers, as (length, count, positions) per
    group: every layer of one forward pass gets the same tensor, so the grouping (a read back from the GPU and
    a few index kernels) is done once per pass instead of once per layer."""

    def __init__(self) -> None:
        self._last: tuple[Any, list[tuple[int, int, Any]]] | None = None

    def of(self, cu_seqlens: Any, device: Any) -> list[tuple[int, int, Any]]:
        import torch

        last = self._last
        if last is not None and last[0] is cu_seqlens:
            return last[1]
        groups = [
            (length, len(starts), (torch.tensor(starts)[:, None] + torch.arange(length)).reshape(-1).to(device))
            for length, starts in _window_starts(cu_seqlens).items()
        ]
        self._last = (cu_seqlens, groups)  # holding the tensor keeps its identity from being reused
        return groups


def _grouped_forward(
    self: Any,
    hidden_states: Any,
    cu_seqlens: Any,
    rotary_pos_emb: Any = None,
    position_embeddings: Any = None,
    *,
    windows: _WindowGroups,
    **kwargs: Any,
) -> Any:
    """The attention module's forward, with each group of equal-length windows attended in one call."""
    import torch
    import torch.nn.functional as F

    rotate = sys.modules[type(self).__module__].apply_rotary_pos_emb_vision
    seq_length = hidden_states.shape[0]
    query, key, value = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    query, key = rotate(query, key, cos, sin)  # (seq, heads, head_dim)
    output = torch.empty_like(query)
    for length, count, positions in windows.of(cu_seqlens, query.device):
        query_w, key_w, value_w = (
            tensor[positions].unflatten(0, (count, length)).transpose(1, 2) for tensor in (query, key, value)
        )
        attended = F.scaled_dot_product_attention(query_w, key_w, value_w, scale=self.scaling)  # (n, heads, len, dim)
        output[positions] = attended.transpose(1, 2).reshape(-1, *output.shape[1:])
    return self.proj(output.reshape(seq_length, -1))


def batch_vision_attention(model: Any) -> int:
    """Make the vision attention of a Qwen-VL ``model`` loaded with ``sdpa`` attend window groups in batched
    calls; returns how many attention modules were changed (0 for other models or implementations)."""
    visual = getattr(getattr(model, "model", model), "visual", None)
    if visual is None or getattr(visual.config, "_attn_implementation", None) != "sdpa":
        return 0
    changed = 0
    windows = _WindowGroups()
    for module in visual.modules():
        if type(module).__name__ in VISION_ATTENTION_CLASSES:
            module.forward = types.MethodType(functools.partial(_grouped_forward, windows=windows), module)
            changed += 1
    return changed
