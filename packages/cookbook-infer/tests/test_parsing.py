import time

import pytest

from cookbook_infer.parsing import (
    ParsedOutput,
    parse_choice,
    parse_reasoning,
    parse_score,
    parse_verdict,
    score_offset,
)
from cookbook_infer.tasks import get_task

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
    # a stray </answer> ends the answer: what follows it is not the answer
    ("3</answer>\n5", ParsedOutput(None, "3")),
    ("<think>x</think>\n4\n</answer>\n\nmore", ParsedOutput("x", "4")),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_reasoning_and_answer_are_separated(text: str, expected: ParsedOutput) -> None:
    assert parse_reasoning(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("4", 4),
        ("4.0", 4),
        (" 5 ", 5),
        ("Score: 2", 2),
        ("**3**", 3),
        ("**Score:** 4", 4),
        ("Score: **4**", 4),
        ("**Score: 4**", 4),
        ("**Score**: 2", 2),
        ("__Score:__ 5.", 5),
        ("The motion is smooth.\n**Score:** 3", 3),
        ("Score: **4.5**", None),
        ("**Score:** 14 out of 5", None),
        ("The motion is smooth.\n4", 4),
        ("4.5", None),
        ("6", None),
        ("0", None),
        ("-1", None),
        ("four", None),
        ("", None),
        # a fraction of the scale is its numerator; of another scale it is None, never rescaled or clamped
        ("4/5", 4),
        ("4 / 5", 4),
        ("Score: 4/5", 4),
        ("**4/5**", 4),
        ("**4**/5", 4),
        ("4 out of 5", 4),
        ("**Score:** 2 out of 5.", 2),
        ("The motion is smooth.\n**Score: 3/5**", 3),
        ("4/10", None),
        ("8/10", None),
        ("5/4", None),
        ("6/5", None),
        ("4.5/5", None),
        ("4/5 stars", None),
        ("4/", None),
        ("4/" + "9" * 5000, None),  # a denominator too long for int() is another scale, not an error
    ],
)
def test_scores_are_read_strictly(answer: str, expected: int | None) -> None:
    assert parse_score(answer, 1, 5) == expected


def test_a_fraction_is_no_score_when_fractions_are_refused() -> None:
    """Numbered categories (the rule task's 0/1/2) are no scale: "1/2" is no answer there."""
    assert parse_score("1/2", 0, 2) == 1
    assert parse_score("1/2", 0, 2, fractions=False) is None
    assert parse_score("1", 0, 2, fractions=False) == 1


def test_the_rule_task_reads_no_fraction_and_the_critic_does() -> None:
    assert get_task("rule").read_answer("1/2") == (None, None)
    assert get_task("rule").read_answer("2") == (None, "2")
    assert get_task("critic").read_answer("**4/5**") == (None, "4")


SPACES = " " * 20_000


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (f"Score:{SPACES}4{SPACES}/{SPACES}5{SPACES}.{SPACES}", 4),
        (f"4{SPACES}out{SPACES}of{SPACES}5{SPACES}", 4),
        (f"4{SPACES}out{SPACES}of{SPACES}x", None),
        (f"4{SPACES}/{SPACES}5{SPACES}x", None),
        (f"4{SPACES}x", None),
    ],
)
def test_a_long_run_of_spaces_in_a_score_line_is_read_in_linear_time(answer: str, expected: int | None) -> None:
    started = time.perf_counter()
    assert parse_score(answer, 1, 5) == expected
    assert time.perf_counter() - started < 0.5  # backtracking over the spaces would take minutes


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (f"**Answer:**{SPACES}B", "B"),
        (f"Answer{SPACES}x", None),
        ("*" * 20_000 + "B", "B"),
        ("*" * 20_000 + "Bx", None),
        ("Answer:" + "*" * 20_000 + SPACES + "x y", None),
        (f"B{SPACES}x", None),
    ],
)
def test_a_long_run_in_a_choice_is_read_in_linear_time(answer: str, expected: str | None) -> None:
    started = time.perf_counter()
    assert parse_choice(answer) == expected
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        (" B\n", "B"),
        ("(C) the cup", "C"),
        ("A. left", "A"),
        ("D) right", "D"),
        ("E: neither", "E"),
        ("I think it is B", None),
        ("A car turns left", None),
        ("Dog", None),
        ("a car turns left", None),
        ("I", "I"),
        ("I am not sure", None),
        ("i.e. the cup", None),
        ("E.g. the cup", None),
        # markdown emphasis and lower case
        ("**B**", "B"),
        ("*B*", "B"),
        ("__B__", "B"),
        ("**B.** the cup", "B"),
        ("**B**. the cup", "B"),
        ("**(C)** the cup", "C"),
        ("(b)", "B"),
        ("b)", "B"),
        ("b.", "B"),
        # a lowercase letter alone is the option written in lower case, not a sentence
        ("b", "B"),
        # after an answer label, and alone on its line before the explanation
        ("Answer: B", "B"),
        ("**Answer:** B", "B"),
        ("**Answer:** **B**", "B"),
        ("answer: (c)", "C"),
        ("Answer:\nD", "D"),
        ("B\n\nBecause the ball falls into the cup.", "B"),
        ("Answer: I think it is B", None),
        ("**Answer: B**", "B"),
        ("*Answer: B*", "B"),
        ("__Answer: B__", "B"),
        ("i.e the cup tips over", None),
        ("e.g, the cup", None),
        ("U.S. troops", None),
        ("B.The cup tips over.", "B"),
        ("b.the cup", "B"),
        ("Answers differ", None),
    ],
)
def test_choices(answer: str, expected: str | None) -> None:
    assert parse_choice(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("Approve", "approve"), ("Reject.", "reject"), ("rejected", "reject"), ("approve or reject", None), ("ok", None)],
)
def test_verdicts(answer: str, expected: str | None) -> None:
    assert parse_verdict(answer) == expected


QUOTED_ANSWER = "<think>\nThe template says <answer>\n2\n</answer>, but</think>\n\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>2 or 4? I say 4</think>\n\n<answer>\n4\n</answer>", "<think>2 or 4? I say 4</think>\n\n<answer>\n"),
        ("The video shows 3 balls.\n4", "The video shows 3 balls.\n"),
        ("4.", ""),
        ("<think>3</think>Score: 3", "<think>3</think>Score: "),
        ("Score: 4.0", "Score: "),
        ("**4**", "**"),
        # the number-only line parse_score reads, not a later mention of the same number
        ("4\n\nI gave 4 because it falls.", ""),
        # an <answer> quoted in the reasoning is not the answer; the plain text after the reasoning is
        (QUOTED_ANSWER + "3", QUOTED_ANSWER),
        (QUOTED_ANSWER + "<answer>\n4\n</answer>", QUOTED_ANSWER + "<answer>\n"),
        ("<think>cut off before the answer", None),
        ("<answer>\n4", None),
        # a score line out of range: parse_score rejects it, as it rejects "6"
        ("Score 14 out of 5", "Score "),
        ("Score 4 out of 5 stars", None),
        ("<think>4/5?</think>\n\n**Score:** 3/5", "<think>4/5?</think>\n\n**Score:** "),
        ("**4/5**", "**"),
        ("4 out of 5", ""),
        ("<think>x</think>\n\n**Score:** 4", "<think>x</think>\n\n**Score:** "),
        ("Score: **4**", "Score: **"),
        ("3</answer>\n5", ""),
    ],
)
def test_score_offset_is_where_the_parsed_score_was_written(text: str, expected: str | None) -> None:
    offset = score_offset(text)
    assert (None if offset is None else text[:offset]) == expected


@pytest.mark.parametrize(
    "text",
    [
        "3</answer>\n5",
        "<think>a</think>\n2\n</answer>\n4",
        "Score: **4**",
        "<think>I say 2</think>\n\n**Score:** 4",
        "<answer>\n**Score:** 3\n</answer>\n5",
        "4<think>x</think>\n2",
        "<think>x</think>\n\nnone",
        "<think>2/5 or 4/5?</think>\n\nScore: **4/5**",
        "<answer>\nThe ball falls.\n3 out of 5\n</answer>",
    ],
)
def test_the_offset_points_at_the_digit_the_score_is_parsed_from(text: str) -> None:
    answer = parse_reasoning(text).answer
    score = None if answer is None else parse_score(answer, 1, 5)
    offset = score_offset(text)
    assert (None if offset is None else int(text[offset])) == score
