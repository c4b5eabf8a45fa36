"""Layers of vision settings, where a frame rule chosen by a stronger layer replaces the weaker layers' rule.

A video takes one frame rule (:data:`~cookbook_data.schemas.FRAME_RULES`: ``fps``, ``nframes`` or
``max_strided_frames``), and vision settings naming two are refused. Settings come in layers (a model's preset,
a TOML file, ``--set``, command-line options; or a server's defaults, a request, a video part), and merged key
by key a weaker layer's ``fps`` would meet a stronger one's ``nframes``. So a layer naming a frame rule clears
the rules beneath it, here for the server's requests and the batch commands alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from cookbook_data.schemas import FRAME_RULES, given_frame_rules
from cookbook_data.video import VisionSettings

C = TypeVar("C", bound=BaseModel)


def layer_vision(base: Mapping[str, Any], *overlays: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by each overlay in turn; an overlay naming a frame rule first clears the rules before it."""
    merged = dict(base)
    for overlay in overlays:
        if any(rule in overlay for rule in FRAME_RULES):
            merged |= dict.fromkeys(FRAME_RULES)
        merged |= overlay
    return merged


def _names_frame_rule(assignment: str) -> bool:
    return assignment.partition("=")[0] in FRAME_RULES


def resolve_layered_config(
    model: type[C], config_file: Path | None, sets: list[str] | None, options: dict[str, Any]
) -> C:
    """:func:`~cookbook_data.clikit.resolve_config` (defaults < TOML file < ``--set key=value`` < options), where
    a frame rule given by a ``--set`` or an option replaces the one of the layers beneath it (see
    :func:`layer_vision`): ``--nframes 8`` over a TOML's ``fps = 2`` samples 8 frames instead of being refused."""
    from cookbook_data.clikit import resolve_config  # the command lines' toolkit, kept out of the server and runs

    sets = sets or []
    beneath = resolve_config(
        model,
        config_file,
        [assignment for assignment in sets if not _names_frame_rule(assignment)],
        {key: value for key, value in options.items() if key not in FRAME_RULES},
    )
    overlays = [
        given_frame_rules(resolve_config(VisionSettings, None, [assignment], {}))
        for assignment in sets
        if _names_frame_rule(assignment)
    ]
    overlays.append({rule: options[rule] for rule in FRAME_RULES if options.get(rule) is not None})
    return resolve_config(model, None, None, layer_vision(beneath.model_dump(exclude_unset=True), *overlays))
