"""The reward service's HTTP records: what ``POST /v1/score`` and the OpenRLHF-style ``POST /get_reward`` take
and answer. Plain pydantic, so clients can import them without the model stack."""

from __future__ import annotations

from typing import Self

from pydantic import Field, JsonValue, model_validator

from cookbook_data.schemas import Strict


class RewardItem(Strict):
    """One video to score, by reference or uploaded, with the text the scorer needs."""

    id: str | None = Field(default=None, description="Echoed back; default: the item's position.")
    video: str | None = Field(
        default=None, description="Absolute path or file:// URL of a video under the service's media roots."
    )
    video_base64: str | None = Field(default=None, description="The video's bytes, base64-encoded (size-limited).")
    caption: str | None = Field(default=None, description="Generation prompt or caption (adherence, videophy2).")
    rule: str | None = Field(default=None, description="Physical rule's text (rule scorer).")
    trajectory: JsonValue = Field(default=None, description="Waypoints (trajectory scorer), as in a waypoint file.")

    @model_validator(mode="after")
    def _one_video(self) -> Self:
        if (self.video is None) == (self.video_base64 is None):
            raise ValueError("give exactly one of `video` (a path) and `video_base64` (uploaded bytes)")
        return self


class RewardRequest(Strict):
    """A batch of items for ``POST /v1/score``."""

    items: list[RewardItem] = Field(min_length=1, description="Videos to score; each succeeds or fails alone.")


class ItemScore(Strict):
    """The outcome for one item: its scores, or the error that stopped it (the other items are unaffected)."""

    id: str
    reward: float | None = Field(default=None, description="Score on the 0-1 reward scale (higher is better).")
    score: float | None = Field(default=None, description="The scorer's own score (e.g. 1-5).")
    expected_score: float | None = None
    rewards: dict[str, float] = Field(default_factory=dict, description="Per-component rewards.")
    probabilities: dict[str, float] = Field(default_factory=dict)
    critique: str | None = None
    error: str | None = Field(default=None, description="Why this item has no score.")


class RewardResponse(Strict):
    """The answer to ``POST /v1/score``: one result per item, in order."""

    model: str | None
    scorer: str
    results: list[ItemScore]


class OpenRLHFRequest(Strict):
    """OpenRLHF's remote reward-model request: ``query`` holds the video references (paths or file:// URLs),
    ``prompts`` the captions, ``labels`` the references (a rule text for the rule scorer)."""

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _aligned(self) -> Self:
        for name in ("prompts", "labels"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.query):
                raise ValueError(f"{name}: {len(values)} entries for {len(self.query)} queries")
        return self


class OpenRLHFResponse(Strict):
    """``rewards`` (and the same numbers as ``scores``) per query; a failed item gets the service's failure
    reward, 1.0 in ``extra_logs.failed`` (0.0 for the others) and its error in ``errors``. OpenRLHF turns each
    ``extra_logs`` entry into a tensor of one number per query (and logs its mean: here, the share of failed
    items), so the error messages live outside it."""

    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]
    errors: list[str | None] = Field(description="Per query: why it has no score, or null when it has one.")
