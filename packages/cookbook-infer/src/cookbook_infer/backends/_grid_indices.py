"""The Qwen-VL models' per-video index work, done on the CPU and once per frame grid.

For every video of a batch, Qwen2.5-VL and Qwen3-VL compute in Python loops over ``grid_thw`` the patches'
rotary positions, Qwen2.5-VL its attention windows and Qwen3-VL its interpolated position embeddings, and both
the prompt's 3-D rope positions. With ``grid_thw`` on a GPU every step of those loops reads a value back (a
host sync, which waits for the GPU's queue to drain) and launches a few tiny kernels: a Reason1 forward pass
adds about 148 operators and 27 ``item`` reads for each extra video, so batching videos hardly makes one
cheaper where the model is small enough for launches to matter (a reward service's batches).

Here the grid is read once per call. Each distinct (t, h, w) gets its rotary positions and window layout
computed once, on the CPU, by transformers' own functions, and kept; a batch's are joined with offsets and
moved to the model's device in one copy. Qwen3-VL's interpolation and both rope indices run on CPU copies of
their inputs. Only index tensors are kept (never anything computed from weights, so training stays correct),
and the results equal the stock functions' (the tests compare them). Models are changed instance by instance,
never transformers' classes.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from functools import lru_cache
from typing import Any

GRIDS_KEPT = 256
"""Distinct frame grids whose indices each model keeps (a few hundred small integer tensors at most)."""

Grid = tuple[int, int, int]


def _grids(grid_thw: Any) -> list[Grid]:
    """(t, h, w) of each video, read from the device in one copy."""
    return [(int(t), int(h), int(w)) for t, h, w in grid_thw.tolist()]


def _position_column(size: Any) -> Any:
    """A stand-in rotary table whose row p holds p: looked up by a tower's ``rot_pos_emb``, it returns the
    patches' (row, column) positions themselves."""
    import torch

    return torch.arange(int(size))[:, None]


def _kept_rotary_positions(visual: Any) -> Callable[[Any], Any]:
    """``rot_pos_emb`` with each grid's positions computed once by the tower's own function, then looked up in
    the real rotary table on its device."""
    import torch

    stock = type(visual).rot_pos_emb
    stand_in = types.SimpleNamespace(spatial_merge_size=visual.spatial_merge_size, rotary_pos_emb=_position_column)

    @lru_cache(maxsize=GRIDS_KEPT)
    def positions(grid: Grid) -> Any:
        with torch.inference_mode(False):  # kept tensors may index tensors that training differentiates
            return stock(stand_in, torch.tensor([grid]))

    def rot_pos_emb(grid_thw: Any) -> Any:
        grids = _grids(grid_thw)
        table = visual.rotary_pos_emb(max(max(h, w) for _, h, w in grids))
        ids = torch.cat([positions(grid) for grid in grids])
        return table[ids.to(table.device)].flatten(1)

    return rot_pos_emb


def _kept_windows(visual: Any) -> Callable[[Any], Any]:
    """Qwen2.5-VL's ``get_window_index`` with each grid's window layout computed once by its own function,
    the batch's joined as the stock loop joins them (indices and bounds shifted by what comes before)."""
    import torch

    stock = type(visual).get_window_index

    @lru_cache(maxsize=GRIDS_KEPT)
    def windows(grid: Grid) -> tuple[Any, list[int]]:
        with torch.inference_mode(False):
            index, bounds = stock(visual, torch.tensor([grid]))
        return index, [int(bound) for bound in bounds]

    def get_window_index(grid_thw: Any) -> tuple[Any, list[int]]:
        indices, bounds, offset = [], [0], 0
        for grid in _grids(grid_thw):
            index, own = windows(grid)
            indices.append(index + offset)
            base = bounds[-1]
            bounds.extend(base + bound for bound in own[1:])
            offset += index.numel()
        return torch.cat(indices), bounds

    return get_window_index


def _on_cpu_grid(stock: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A tower function of ``grid_thw`` given the grid on the CPU, so its loop reads no value from the GPU."""

    def on_cpu(grid_thw: Any) -> Any:
        return stock(grid_thw.cpu())

    return on_cpu


def _rope_on_cpu(stock: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
    """``get_rope_index`` run on CPU copies of its tensors, its results moved back to where they came from."""
    import torch

    def get_rope_index(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        given = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
        if not given:
            return stock(*args, **kwargs)
        device = given[0].device
        args = tuple(value.cpu() if isinstance(value, torch.Tensor) else value for value in args)
        kwargs = {key: value.cpu() if isinstance(value, torch.Tensor) else value for key, value in kwargs.items()}
        position_ids, deltas = stock(*args, **kwargs)
        return position_ids.to(device), deltas.to(device)

    return get_rope_index


def index_grids_once(model: Any) -> bool:
    """Give a Qwen2.5-VL or Qwen3-VL ``model`` (loaded by ``AutoModelForImageTextToText``) the index functions
    above; returns whether it was one (other models are left as they are)."""
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None)
    if visual is None or not hasattr(inner, "get_rope_index"):
        return False
    kind = type(visual).__name__
    if kind == "Qwen2_5_VisionTransformerPretrainedModel":
        visual.get_window_index = _kept_windows(visual)
    elif kind == "Qwen3VLVisionModel":
        visual.fast_pos_embed_interpolate = _on_cpu_grid(visual.fast_pos_embed_interpolate)
    else:
        return False
    visual.rot_pos_emb = _kept_rotary_positions(visual)
    inner.get_rope_index = _rope_on_cpu(inner.get_rope_index)
    return True
