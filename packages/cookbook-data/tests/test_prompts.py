import hashlib
from importlib import resources
from pathlib import Path

import pytest

from cookbook_data.prompts import load_prompt, shipped_prompts, template_file

PUBLISHED = {
    # File SHA-256 of the texts the published recipes were trained and evaluated with.
    "reason1_reward_yesno": "fa4abec95958691044fb2ced6a24b2f55f9c33930ab25bfa3a4adfcc8a85cde5",
    "reason1_videophy2_critic": "6ae785cb596cd3f900ce0f9588208f3a766037d0329527fb03330ec0108c162b",
    "reason1_videophy2_critic_thinking": "8590d8f8654cd81195aeaa119da89654f0b513eedefda8d11389f980b1479122",
    "reason2_videophy2_critic": "9ca78b555a5f15957b38ef1e037ec34662988463156275a24e34e4d27bda1414",
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_prompts_ship_byte_exact(name: str) -> None:
    data = resources.files("cookbook_data.prompts").joinpath(f"{name}.yaml").read_bytes()
    assert hashlib.sha256(data).hexdigest() == PUBLISHED[name]
    template = load_prompt(name)
    assert template.version == PUBLISHED[name][:12]
    assert template.id == f"{name}@{PUBLISHED[name][:12]}"


def test_all_shipped_prompts_are_known() -> None:
    assert set(shipped_prompts()) >= set(PUBLISHED)


def test_critic_texts_have_the_published_shape() -> None:
    reason1 = load_prompt("reason1_videophy2_critic")
    assert reason1.user_prompt == "Does this video adhere to the physical laws?\n"
    assert reason1.system_prompt is not None
    assert reason1.system_prompt.endswith("<answer>\n2\n</answer>\n")
    thinking = load_prompt("reason1_videophy2_critic_thinking")
    assert thinking.system_prompt is not None
    assert "<think>\n[Analysis" in thinking.system_prompt
    reason2 = load_prompt("reason2_videophy2_critic")
    assert reason2.system_prompt == "You are a helpful assistant."
    assert reason2.user_prompt.endswith("Example Response:\n2\n\nDoes this video adhere to the physical laws?\n")
    yes_no = load_prompt("reason1_reward_yesno")
    assert yes_no.system_prompt is not None
    assert yes_no.system_prompt.endswith('Begin your response with a single word: "Yes" or "No".')
    assert "person's body" in yes_no.system_prompt


def test_a_user_template_file_is_loaded_by_path(tmp_path: Path) -> None:
    path = tmp_path / "my_caption.yaml"
    path.write_text("user_prompt: |\n  Describe the video in detail.\n")
    template = load_prompt(path)
    assert (template.name, template.system_prompt, template.user_prompt) == (
        "my_caption",
        None,
        "Describe the video in detail.\n",
    )
    assert template.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_a_folder_named_as_a_shipped_template_does_not_hide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "caption").mkdir()
    assert template_file("caption") is None
    assert load_prompt("caption").name == "caption"
    (tmp_path / "mine").write_text("user_prompt: Describe it.\n")  # a file is a template, whatever its suffix
    assert template_file("mine") == Path("mine")


def test_bad_templates_are_refused_naming_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("user_promt: hello\n")
    with pytest.raises(ValueError, match=r"typo\.yaml: not a prompt template.*user_promt"):
        load_prompt(path)
    with pytest.raises(FileNotFoundError, match=r"absent\.yaml"):
        load_prompt(tmp_path / "absent.yaml")
    with pytest.raises(
        ValueError, match=r"unknown prompt 'critic'; shipped prompts: approve_reject, caption, .*reason1_reward_yesno"
    ):
        load_prompt("critic")


def test_published_prompts_have_no_placeholders_or_braces() -> None:
    for name in PUBLISHED:
        template = load_prompt(name)
        assert template.placeholders == frozenset()
        assert "{" not in (template.system_prompt or "") + template.user_prompt
        assert template.render() == template


@pytest.mark.parametrize(
    ("name", "placeholders"),
    [("caption", set()), ("vqa", {"question"}), ("multiple_choice", {"question", "options"})],
)
def test_task_templates_ship_with_their_placeholders(name: str, placeholders: set[str]) -> None:
    assert load_prompt(name).placeholders == placeholders


def test_render_fills_exactly_the_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "mc.yaml"
    path.write_text('system_prompt: "Topic: {topic}"\nuser_prompt: "{question}\\n{options}\\nJSON: {\\"a\\": 1} { }"\n')
    template = load_prompt(path)
    assert template.placeholders == {"topic", "question", "options"}
    rendered = template.render(topic="physics", question="Why {x}?", options="A. yes\nB. no")
    assert rendered.system_prompt == "Topic: physics"
    assert rendered.user_prompt == 'Why {x}?\nA. yes\nB. no\nJSON: {"a": 1} { }'
    assert rendered.id == template.id
    assert template.user_prompt.startswith("{question}")  # the template itself is unchanged
    with pytest.raises(ValueError, match=r"mc@\w+: no value for \{options\}, \{topic\}"):
        template.render(question="Why?")
    with pytest.raises(ValueError, match=r"no placeholder for \{extra\}"):
        template.render(topic="t", question="q", options="o", extra="e")
