"""Who may ask a server and what it may read: the bearer tokens both servers take, and media references no path
can be made of (confinement to the media roots is tested through the servers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from cookbook_infer.access import MediaRefused, local_media, read_token_file, service_token
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


def test_a_token_file_is_read_without_its_newline_and_an_empty_one_is_refused_by_name(tmp_path: Path) -> None:
    key, empty = tmp_path / "key.txt", tmp_path / "empty.txt"
    key.write_text("s3cret\n")
    empty.write_text("\n")

    assert read_token_file(key) == "s3cret"
    with pytest.raises(ValueError, match=f"^{re.escape(str(empty))}: the file is empty"):
        read_token_file(empty)


def test_a_service_takes_its_token_from_the_environment_before_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "key.txt"
    key.write_text("from-file\n")
    monkeypatch.delenv("COOKBOOK_API_KEY", raising=False)
    assert service_token("COOKBOOK_API_KEY", None) is None
    assert service_token("COOKBOOK_API_KEY", key) == "from-file"
    monkeypatch.setenv("COOKBOOK_API_KEY", "")  # set but empty: as if unset
    assert service_token("COOKBOOK_API_KEY", key) == "from-file"
    monkeypatch.setenv("COOKBOOK_API_KEY", "from-env")
    assert service_token("COOKBOOK_API_KEY", key) == "from-env"


@pytest.mark.parametrize("name", ["a\x00b.mp4", "x" * 5000 + ".mp4", "%00.mp4"])
def test_a_reference_no_path_can_be_made_of_is_a_bad_request(tmp_path: Path, name: str) -> None:
    reference = f"file://{tmp_path}/{name}" if name.startswith("%") else f"{tmp_path}/{name}"
    with pytest.raises(MediaRefused) as refused:
        local_media(reference, [tmp_path.resolve()])
    assert refused.value.status == 400
