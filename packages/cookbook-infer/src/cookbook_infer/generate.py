"""Ask a model about a few video files: the quick, one-off use of a backend."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from cookbook_data.prompts import PromptTemplate
from cookbook_data.schemas import Prediction
from cookbook_data.video import VisionSettings
from cookbook_infer.backends.base import Backend, SamplingSettings
from cookbook_infer.parsing import parse_reasoning

DEFAULT_CRITIC_PROMPTS = {
    "qwen2_5_vl": "reason1_videophy2_critic",
    "qwen3_vl": "reason2_videophy2_critic",
}
"""The published VideoPhy-2 critic prompt for each architecture (``config.model_type``)."""


def generate_for_videos(
    backend: Backend,
    template: PromptTemplate,
    videos: Sequence[Path],
    vision: VisionSettings,
    sampling: SamplingSettings,
    *,
    batch_size: int = 4,
) -> Iterator[Prediction]:
    """Yield one :class:`Prediction` per video (id = the path), batch by batch, in order."""
    for start in range(0, len(videos), batch_size):
        batch = videos[start : start + batch_size]
        conversations = [template.conversation([vision.video_part(str(path.resolve()))]) for path in batch]
        began = time.perf_counter()
        generations = backend.generate(conversations, sampling)
        latency = (time.perf_counter() - began) / len(batch)
        for path, generation in zip(batch, generations, strict=True):
            parsed = parse_reasoning(generation.text)
            yield Prediction(
                sample_id=str(path),
                model=backend.model_id,
                task=template.id,
                raw_text=generation.text,
                thinking=parsed.thinking,
                answer=parsed.answer,
                latency_s=latency,
                num_generated_tokens=generation.num_generated_tokens,
            )
