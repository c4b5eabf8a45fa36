"""The vision settings a person chooses, with the defaults of dataset building.

A build records its vision settings in every row, and training and evaluation read them back from there; what
a person sets is therefore only the build's options, and ``cookbook-data sample`` takes the same ones with the
same defaults, so that its contact sheet shows the frames a model trained on a default build sees.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from cookbook_data.schemas import Strict, given_frame_rules
from cookbook_data.video import VisionSettings

DEFAULT_FPS = 4.0
"""Frames per second when no other frame rule (``nframes``, ``max_strided_frames``) is given (Cosmos Reason's
documented input rate)."""
REASON1_TOTAL_PIXELS = 8192 * 28 * 28
"""Cosmos Reason1's documented pixel budget over all frames of a video."""


class VisionOptions(Strict):
    """How videos become model input: frame rule, frame and pixel bounds, patch factor. Defaults are Cosmos
    Reason's documented input (4 fps; Reason1's pixel budget for patch factor 28, none for 32)."""

    fps: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description=f"Frames per second to sample (default {DEFAULT_FPS} without another frame rule)."
    )
    nframes: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Exact number of frames.")
    max_strided_frames: Annotated[int, Field(ge=2)] | None = Field(
        default=None,
        description="Every k-th frame instead, at most this many (the Cosmos-Reason1-7B-Reward recipe, 160).",
    )
    min_frames: int = Field(default=4, gt=0, description="Fewest frames when sampling by fps.")
    max_frames: int = Field(default=768, gt=0, description="Most frames when sampling by fps.")
    min_pixels: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Smallest area of one frame.")
    max_pixels: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Largest area of one frame.")
    total_pixels: Annotated[int, Field(gt=0)] | None = Field(
        default=REASON1_TOTAL_PIXELS,
        description="Pixel budget over all frames of a video (by default Reason1's; none for patch factor 32, "
        "as Reason2 inference reads videos).",
    )
    patch_factor: Literal[28, 32] | None = Field(
        default=None,
        description="28 for Reason1, 32 for Reason2; None: 28, except in a build: 32 with a shipped reason2 "
        "prompt, and required with a user's template file.",
    )

    @model_validator(mode="after")
    def _check_vision(self) -> Self:
        if "total_pixels" not in self.model_fields_set and self.resolved_patch_factor() == 32:
            self.total_pixels = None  # Reason2's inference default: no budget beyond Qwen3-VL's own
        self.vision_settings()
        return self

    def resolved_patch_factor(self) -> Literal[28, 32]:
        """The patch factor given, else Reason1's."""
        return self.patch_factor if self.patch_factor is not None else 28

    def vision_settings(self) -> VisionSettings:
        """The vision settings these options give, defaults resolved."""
        return VisionSettings(
            **(given_frame_rules(self) or {"fps": DEFAULT_FPS}),
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            total_pixels=self.total_pixels,
            patch_factor=self.resolved_patch_factor(),
        )
