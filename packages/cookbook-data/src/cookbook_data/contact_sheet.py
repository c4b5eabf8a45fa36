"""A grid of sampled frames in one PNG, so a person can see what the model will see."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cookbook_data.video import SampledVideo

if TYPE_CHECKING:
    from PIL import Image


def contact_sheet(video: SampledVideo, *, columns: int = 4, tile_width: int = 256) -> Image.Image:
    """Frames in sampling order, left to right, each labelled with its frame index and timestamp."""
    from PIL import Image, ImageDraw

    height, width = video.frames.shape[1:3]
    tile_height = max(1, round(tile_width * height / width))
    rows = -(-len(video.frames) // columns)
    sheet = Image.new("RGB", (columns * tile_width, rows * tile_height), "black")
    draw = ImageDraw.Draw(sheet)
    for position, (frame, index, seconds) in enumerate(
        zip(video.frames, video.frame_indices, video.timestamps, strict=True)
    ):
        left, top = (position % columns) * tile_width, (position // columns) * tile_height
        tile = Image.fromarray(frame).resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        sheet.paste(tile, (left, top))
        label = f"#{index} {seconds:.2f}s"
        draw.rectangle((left, top, left + 8 + 7 * len(label), top + 14), fill="black")
        draw.text((left + 4, top + 2), label, fill="white")
    return sheet
