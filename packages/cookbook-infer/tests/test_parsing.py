import pytest

from cookbook_infer.parsing import ParsedOutput, parse_reasoning

CASES = [
    ("<think>\nThe ball hovers.\n</think>\n\n<answer>\n2\n</answer>", ParsedOutput("The ball hovers.", "2")),
    ("<think>a < b && c > d</think>\n\n<answer>x & y</answer>", ParsedOutput("a < b && c > d", "x & y")),
    ("<answer>\n4\n</answer>", ParsedOutput(None, "4")),
    ("4", ParsedOutput(None, "4")),
    ("  The video is fine.\n3\n", ParsedOutput(None, "The video is fine.\n3")),
    ("<think>reasoning\n</think>\n\n5", ParsedOutput("reasoning", "5")),
    ("reasoning only closed</think>\n\n5", ParsedOutput("reasoning only closed", "5")),
    ("<think>cut off in the middle of", ParsedOutput("cut off in the middle of", None)),
    ("<think>done</think><answer>3", ParsedOutput("done", None)),
    ("<think></think>\n\n<answer></answer>", ParsedOutput(None, None)),
    ("", ParsedOutput(None, None)),
    ("<answer>1</answer> then <answer>5</answer>", ParsedOutput(None, "5")),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_reasoning_and_answer_are_separated(text: str, expected: ParsedOutput) -> None:
    assert parse_reasoning(text) == expected
