"""Loading Cosmos Reason checkpoints with Hugging Face transformers (CPU or GPU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass
class LoadedModel:
    """A model, its processor, and the id it was loaded from."""

    model_id: str
    model: Any
    processor: Any


def load_pretrained(
    model_id: str,
    *,
    device: str = "cpu",
    dtype: Dtype = "auto",
    revision: str | None = None,
) -> LoadedModel:
    """Load a checkpoint by hub id or local path with the Auto classes, in eval mode on ``device``.

    The processor pads on the left so batched generation continues every prompt from its last token.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_id, revision=revision)
    processor.tokenizer.padding_side = "left"
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model: Any = AutoModelForImageTextToText.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    model.to(device)
    model.eval()
    return LoadedModel(model_id=model_id, model=model, processor=processor)
