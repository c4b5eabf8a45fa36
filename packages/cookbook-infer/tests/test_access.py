"""Who may ask a server and what it may read: the bearer tokens both servers take, and media references no path
can be made of (confinement to the media roots is tested through the servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cookbook_infer.access import MediaRefused, local_media
from cookbook_infer.serve import ServeSettings


@pytest.mark.parametrize("given", ["s3cret\n", " s3cret", "\ts3cret\r\n"])
def test_a_token_loses_its_surrounding_whitespace(given: str) -> None:
    settings = ServeSettings(api_key=given)  # as read from a file or an environment variable made from one

    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret"


@pytest.mark.parametrize("given", ["", " ", "\n"])
def test_a_blank_token_is_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="the token is empty"):
        ServeSettings(api_key=given)


@pytest.mark.parametrize("name", ["a\x00b.mp4", "x" * 5000 + ".mp4", "%00.mp4"])
def test_a_reference_no_path_can_be_made_of_is_a_bad_request(tmp_path: Path, name: str) -> None:
    reference = f"file://{tmp_path}/{name}" if name.startswith("%") else f"{tmp_path}/{name}"
    with pytest.raises(MediaRefused) as refused:
        local_media(reference, [tmp_path.resolve()])
    assert refused.value.status == 400
