"""The Cosmos Reason models we know, with the settings their publishers recommend.

A known hub id brings its architecture, default vision settings and sampling presets; any other hub id or
local folder works too when its architecture is given (or read from its ``config.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from cookbook_data.schemas import Strict
from cookbook_data.video import VisionSettings
from cookbook_data.vision_options import DEFAULT_FPS, REASON1_TOTAL_PIXELS
from cookbook_infer.backends.base import SamplingSettings

Arch = Literal["reason1", "reason2"]

ARCH_OF_MODEL_TYPE: dict[str, Arch] = {"qwen2_5_vl": "reason1", "qwen3_vl": "reason2"}
"""``config.model_type`` of each architecture: Reason1 is Qwen2.5-VL, Reason2 is Qwen3-VL."""

REASONING_SUFFIX: dict[Arch, str] = {
    "reason1": (
        "Answer the question in the following format: <think>\nyour reasoning\n</think>\n\n"
        "<answer>\nyour answer\n</answer>."
    ),
    "reason2": (
        "Answer the question using the following format:\n\n<think>\nYour reasoning.\n</think>\n\n"
        "Write your final answer immediately after the </think> tag."
    ),
}
"""What each model family was trained to read as "reason before answering", appended to the user prompt."""


class ModelSpec(Strict):
    """A model and the settings it is run with unless told otherwise."""

    id: str = Field(description="Hub id or local folder.")
    arch: Arch = Field(description="reason1 (Qwen2.5-VL) or reason2 (Qwen3-VL).")
    vision: VisionSettings = Field(description="Default frame sampling for this model.")
    reasoning_sampling: SamplingSettings = Field(description="Sampling preset when reasoning is asked for.")
    direct_sampling: SamplingSettings = Field(description="Sampling preset for a direct answer.")


REWARD_MODEL_VISION = VisionSettings(max_strided_frames=160, total_pixels=9216 * 28 * 28, patch_factor=28)
"""Frames as Cosmos-Reason1-7B-Reward was published with: every k-th frame, at most 160 (an even count), each
frame within 9216 * 28 * 28 * 2 / frames pixels (and the usual cap of 768 tokens a frame)."""

VISION_PRESETS: dict[str, VisionSettings] = {"nvidia/Cosmos-Reason1-7B-Reward": REWARD_MODEL_VISION}
"""Models whose published frame sampling differs from their family's, by hub id. A local folder is not matched by
its name (a fine-tuned copy may have been trained on other frames): a copy of the reward model gets Reason1's
defaults unless its run sets the recipe (``--set max_strided_frames=160 --set total_pixels=7225344``)."""


def _defaults(model_id: str, arch: Arch) -> ModelSpec:
    if arch == "reason1":
        sampling = SamplingSettings(temperature=0.6, top_p=0.95, max_new_tokens=4096)
        return ModelSpec(
            id=model_id,
            arch=arch,
            vision=VISION_PRESETS.get(model_id)
            or VisionSettings(fps=DEFAULT_FPS, total_pixels=REASON1_TOTAL_PIXELS, patch_factor=28),
            reasoning_sampling=sampling,
            direct_sampling=sampling,
        )
    return ModelSpec(
        id=model_id,
        arch=arch,
        vision=VisionSettings(fps=DEFAULT_FPS, patch_factor=32),
        reasoning_sampling=SamplingSettings(temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=4096),
        direct_sampling=SamplingSettings(
            temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5, max_new_tokens=4096
        ),
    )


KNOWN_MODELS: dict[str, Arch] = {
    "nvidia/Cosmos-Reason1-7B": "reason1",
    "nvidia/Cosmos-Reason1-7B-Reward": "reason1",
    "nvidia/Cosmos-Reason2-2B": "reason2",
    "nvidia/Cosmos-Reason2-8B": "reason2",
}


def _arch_from_folder(model_id: str) -> Arch | None:
    config = Path(model_id) / "config.json"
    if not config.is_file():
        return None
    model_type = json.loads(config.read_text()).get("model_type")
    return ARCH_OF_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None


def resolve_model(model_id: str, arch: Arch | None = None) -> ModelSpec:
    """The spec of ``model_id``: a known id, or any id / folder whose architecture is given or readable."""
    known = KNOWN_MODELS.get(model_id)
    found = known or _arch_from_folder(model_id)
    if arch is not None and found is not None and arch != found:
        raise ValueError(f"{model_id} is a {found} model, not {arch}")
    chosen = arch or found
    if chosen is None:
        raise ValueError(
            f"{model_id}: unknown model; give its architecture (--arch reason1 for Qwen2.5-VL checkpoints, "
            f"reason2 for Qwen3-VL). Known models: {', '.join(KNOWN_MODELS)}"
        )
    return _defaults(model_id, chosen)
