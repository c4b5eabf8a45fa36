"""The reward service's OpenAPI schema lists the refusals it answers, in the body it answers them with. Run for
real on 127.0.0.1 with the trajectory scorer, which needs no model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cookbook_infer.testing.servers import answered_keys, documented_keys, listed_statuses, serving_app
from cookbook_reward.config import RewardServiceSettings, ScorerConfig
from cookbook_reward.scorers import build_scorer
from cookbook_reward.service import create_app

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCORING = ["200", "400", "413", "429", "503", "504"]
"""What the scoring endpoints answer whatever the settings."""


def serve(**settings: Any) -> Any:
    scorer = build_scorer(ScorerConfig(scorer="trajectory"), Path("/"))
    return serving_app(create_app(scorer, RewardServiceSettings(**settings)))


def test_the_schema_lists_the_refusals_the_service_answers_in_their_shape() -> None:
    item = {"video": "/videos/clip.mp4", "trajectory": [[0.0, 0.0]]}
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/v1/score", {"content": b"{not json"}, AUTH),  # 400: where the JSON breaks
        ("/get_reward", {"json": {"query": "clip.mp4"}}, AUTH),  # 400: query must be a list
        ("/v1/score", {"json": {"items": [item]}}, {}),  # 401: no token
        ("/v1/score", {"json": {"items": [item, item]}}, AUTH),  # 413: more items than max_queue
        ("/get_reward", {"content": b" " * 2048}, AUTH),  # 413: over max_request_bytes
    ]
    with serve(token=TOKEN, max_queue=1, max_request_bytes=1024) as url:
        document = httpx.get(f"{url}/openapi.json", headers=AUTH, timeout=10).json()
        answered = [
            (path, httpx.post(f"{url}{path}", **sent, headers={**headers, "content-type": "application/json"}))
            for path, sent, headers in requests
        ]
    with serve() as url:
        open_document = httpx.get(f"{url}/openapi.json", timeout=10).json()

    assert [response.status_code for _, response in answered] == [400, 400, 401, 413, 413]
    for path, response in answered:
        assert documented_keys(document, path, "post", response.status_code) == answered_keys(response.json())
    guarded = sorted([*SCORING, "401"])
    assert listed_statuses(document) == {
        ("get", "/healthz"): ["200"],
        ("get", "/metrics"): ["200"],
        ("post", "/v1/score"): guarded,
        ("post", "/get_reward"): guarded,
    }
    # without a token nothing answers 401
    assert listed_statuses(open_document)[("post", "/v1/score")] == SCORING
    assert listed_statuses(open_document)[("post", "/get_reward")] == SCORING
