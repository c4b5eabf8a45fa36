"""GRPO reward functions for cosmos-rl and TRL.

The two trainers call rewards differently:

* cosmos-rl scores one completion at a time:
  ``fn(completion: str, reference, *, prompt, data_packer, config, tokenizer) -> float | (float, dict)``.
  A list entry may be ``(fn, weight)``; the total reward is the weighted sum. Every function here has this
  form, returns ``(reward, metrics)`` and ignores the keyword arguments it has no use for.
* TRL scores a batch: ``fn(completions: list[str], **columns) -> list[float]``, with the dataset's columns
  (``reference`` or ``solution``) as per-item lists among the keyword arguments and, for chat datasets, each
  completion a list of messages. :func:`as_trl` adapts any function here to that form.

cosmos-rl runs rewards in forked CPU processes on its rollout workers, so this module loads only the standard
library and the pure-Python parsers of :mod:`cookbook_infer.parsing`; numpy arrives with the trajectory reward
alone, and a model that judges outputs belongs behind a service reached through :func:`remote_reward`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeGuard

from cookbook_infer.access import MediaRefused
from cookbook_infer.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    parse_choice,
    parse_reasoning,
    parse_score,
)

if TYPE_CHECKING:
    from cookbook_reward.trajectory import VerifierConfig

RewardResult = tuple[float, dict[str, float]]
RewardFn = Callable[..., float | RewardResult]

log = logging.getLogger(__name__)

TOKEN_ENV = "COOKBOOK_REWARD_TOKEN"
"""Environment variable holding the reward service's bearer token when none is passed."""

_FORMAT = re.compile(r"<think>.*</think>\n\n<answer>.*</answer>", re.DOTALL)


def format_reward(completion: str, reference: object = None, **kwargs: object) -> RewardResult:
    """1.0 when the whole completion is one ``<think>…</think>``, exactly ``\\n\\n``, one ``<answer>…</answer>``.

    The published recipe's pattern ``^<think>.*</think>\\n\\n<answer>.*</answer>$`` also accepts nested or
    repeated blocks (``.*`` spans them) and a trailing newline (``$`` matches before one); each tag must occur
    exactly once here and nothing may follow the answer, so the policy cannot learn a looser shape.
    """
    shaped = _FORMAT.fullmatch(completion) is not None
    single = all(completion.count(tag) == 1 for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE))
    reward = float(shaped and single)
    return reward, {"format": reward}


def _reference_answer(reference: object) -> str:
    """The answer inside a label: ``4``, ``"4"`` and the SFT form ``"<answer>\\n4\\n</answer>"`` alike."""
    answer = parse_reasoning(str(reference)).answer
    if answer is None:
        raise ValueError(f"reference {reference!r} holds no answer")
    return answer


def score_accuracy_reward(
    completion: str, reference: object, *, low: int = 1, high: int = 5, **kwargs: object
) -> RewardResult:
    """The published dense score reward: 1.0 for the exact score, 0.5 when one off, else 0.

    An answer without a score in [low, high] earns 0 and sets ``score_unparseable``, so a policy drifting away
    from answering shows in the logs rather than hiding among wrong answers. A reference without a score is a
    dataset bug and raises.
    """
    truth = parse_score(_reference_answer(reference), low, high)
    if truth is None:
        raise ValueError(f"reference {reference!r} holds no score in [{low}, {high}]")
    answer = parse_reasoning(completion).answer
    predicted = None if answer is None else parse_score(answer, low, high)
    if predicted is None:
        return 0.0, {"score_accuracy": 0.0, "score_exact": 0.0, "score_unparseable": 1.0}
    error = abs(predicted - truth)
    reward = 1.0 if error == 0 else 0.5 if error <= 1 else 0.0
    return reward, {"score_accuracy": reward, "score_exact": float(error == 0), "score_unparseable": 0.0}


def choice_accuracy_reward(completion: str, reference: object, **kwargs: object) -> RewardResult:
    """1.0 when the answer picks the reference's option letter, else 0 (``choice_unparseable`` when none)."""
    truth = parse_choice(_reference_answer(reference))
    if truth is None:
        raise ValueError(f"reference {reference!r} names no option letter")
    answer = parse_reasoning(completion).answer
    predicted = None if answer is None else parse_choice(answer)
    reward = float(predicted == truth)
    return reward, {"choice_accuracy": reward, "choice_unparseable": float(predicted is None)}


class RemoteRewardError(RuntimeError):
    """The reward service could not be reached, did not answer in time, answered something other than rewards,
    or could not score the completion."""


def _as_text(value: object) -> str:
    """A prompt or label as the service's protocol wants it: text, "" for none, the last user turn's text for a
    conversation (a chat prompt, as TRL passes it: the service reads the prompt as the video's caption, which
    the conversation's JSON is not), JSON for other structured values."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if _is_conversation(value):
        asked = [message for message in value if message.get("role") == "user"]
        if asked:
            return _content_text(asked[-1].get("content"))
    return json.dumps(value, ensure_ascii=False, default=str)


def _is_conversation(value: object) -> TypeGuard[Sequence[dict[str, object]]]:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(message, dict) and "role" in message for message in value)
    )


def _reward_url(base_url: str) -> str:
    url = base_url.rstrip("/") + "/get_reward"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"reward service URL must be http(s), got {base_url!r}")
    return url


BUSY = frozenset({429, 503})
"""Answers of a service that is full for now (our service's queue, Ray Serve's proxy): asked again."""


def _retry_after(error: urllib.error.HTTPError, attempt: int) -> float:
    """Seconds to wait before asking a busy service again: its ``Retry-After`` (in seconds) when it gives one,
    else a doubling back-off from 0.25 s; at least 0.1 s (``Retry-After: 0`` would otherwise ask a full service
    again thousands of times a second) and at most 10 s."""
    given = (error.headers.get("Retry-After") or "").strip()
    wait = float(given) if given.isdigit() else 0.25 * 2**attempt
    return min(max(wait, 0.1), 10.0)


def _post_json(url: str, body: dict[str, object], token: str, timeout_s: float) -> bytes:
    """POST ``body`` (with ``token`` unless it is empty) and return the answer's bytes. A busy answer (429, 503)
    is asked again after the wait it names, until ``timeout_s`` has passed since the first try: under a training
    step's burst the queue of a shared service fills for a moment, which should slow the step down, not fail it."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode()
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        left = max(deadline - time.monotonic(), 0.001)
        try:
            with urllib.request.urlopen(request, timeout=left) as response:
                payload: bytes = response.read()
                return payload
        except urllib.error.HTTPError as error:
            detail = error.read(300).decode("utf-8", errors="replace").strip() or str(error.reason)
            wait = _retry_after(error, attempt)
            if error.code not in BUSY or time.monotonic() + wait >= deadline:
                tried = f" (after {attempt + 1} tries in {timeout_s:g} s)" if error.code in BUSY else ""
                raise RemoteRewardError(f"reward service {url} answered HTTP {error.code}: {detail}{tried}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):  # connected, or still connecting, but no answer in time
                raise RemoteRewardError(
                    f"reward service {url} did not answer within {timeout_s:g} s (the service may be busy; "
                    "raise timeout_s)"
                ) from None
            raise RemoteRewardError(f"reward service {url} could not be reached: {reason}") from None
        time.sleep(wait)
        attempt += 1


def _single_reward(payload: bytes, url: str) -> tuple[float, str | None]:
    """The one reward of the answer, and the service's reason when it could not score the completion (our
    service answers such an item with its ``failure_reward`` and the reason in ``errors``; other OpenRLHF
    services send no ``errors``).

    A completion whose video the service refused to look for (outside its media roots, no such file) raises:
    that is a misconfiguration (a wrong ``--media-root``, storage the service does not see), and training on the
    failure reward would hide it. A video it found but could not score (one that does not decode) keeps the
    failure reward: a broken output of the policy deserves it, and must not stop the training.
    """
    try:
        answer = json.loads(payload)
        (reward,) = answer["rewards"]
        error = (answer.get("errors") or [None])[0]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RemoteRewardError(
            f'reward service {url} answered {payload[:200]!r}, expected JSON {{"rewards": [<one number>]}}'
        ) from None
    if isinstance(error, str) and error.startswith(f"{MediaRefused.__name__}:"):
        raise RemoteRewardError(f"reward service {url} could not read the completion's video: {error}")
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise RemoteRewardError(f"reward service {url} answered a reward that is not a finite number: {reward!r}")
    return float(reward), None if error is None else str(error)


def remote_reward(
    completion: str,
    reference: object = None,
    *,
    base_url: str,
    prompt: object = None,
    timeout_s: float = 60.0,
    token: str | None = None,
    **kwargs: object,
) -> RewardResult:
    """The reward a service gives one completion, over the OpenRLHF protocol.

    ``POST {base_url}/get_reward`` with ``{"query": [completion], "prompts": [prompt], "labels": [reference]}``
    answered by ``{"rewards": [r], ...}``. A bearer token comes from `token` or else from the
    ``COOKBOOK_REWARD_TOKEN`` environment variable. A busy service (429, 503) is asked again, as its
    ``Retry-After`` says, for up to ``timeout_s`` in all. Only the standard library is used, so it runs in the
    forked reward processes; any other failure, a completion whose video the service may not or cannot find
    included, raises :class:`RemoteRewardError` naming the URL, because a silent 0 would train the policy on an
    outage. A video the service found but could not score (it does not decode) gets the service's failure
    reward, with ``remote_reward_failed`` 1.0 in the metrics and the reason logged. The token loses surrounding
    whitespace, as the service's does (a secret read from a file often ends in a newline).
    """
    url = _reward_url(base_url)
    body: dict[str, object] = {"query": [completion], "prompts": [_as_text(prompt)], "labels": [_as_text(reference)]}
    payload = _post_json(url, body, (token or os.environ.get(TOKEN_ENV) or "").strip(), timeout_s)
    reward, error = _single_reward(payload, url)
    if error is not None:
        log.warning(
            "reward service %s could not score %r: %s; its failure reward %s is used", url, completion, error, reward
        )
    return reward, {"remote_reward": reward, "remote_reward_failed": float(error is not None)}


class _BoundReward:
    """A reward function with some keyword arguments fixed and its own ``__name__``.

    Trainers take plain functions and log each by its name; unlike a closure, an instance pickles, for pools
    that ship their tasks to worker processes.
    """

    def __init__(self, fn: RewardFn, name: str, **bound: object) -> None:
        self.fn = fn
        self.bound = bound
        self.__name__ = self.__qualname__ = name

    def __call__(self, completion: str, reference: object = None, **kwargs: object) -> float | RewardResult:
        return self.fn(completion, reference, **{**kwargs, **self.bound})

    def __repr__(self) -> str:
        return f"{self.__name__}({', '.join(f'{key}={value!r}' for key, value in self.bound.items())})"


def make_remote_reward(
    base_url: str, *, timeout_s: float = 60.0, token: str | None = None, name: str = "remote_reward"
) -> RewardFn:
    """:func:`remote_reward` bound to one service, in the cosmos-rl form (``fn(completion, reference, **kw)``)."""
    _reward_url(base_url)
    return _BoundReward(remote_reward, name, base_url=base_url, timeout_s=timeout_s, token=token)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


def _waypoint_text(completion: str) -> str | None:
    """The answer's text (the whole completion when it has no tags), without a Markdown code fence."""
    answer = parse_reasoning(completion).answer
    if answer is None:
        return None
    fenced = _FENCE.fullmatch(answer)
    return fenced.group(1) if fenced else answer


def trajectory_reward(
    completion: str, reference: object = None, *, verifier: VerifierConfig | None = None, **kwargs: object
) -> RewardResult:
    """The fraction of comfort checks passed by the waypoints in the answer (see
    :func:`cookbook_reward.trajectory.verify_trajectory`), with one 1.0/0.0 metric per check.

    Waypoints are JSON: a list of ``[x, y]`` pairs or an object with ``x`` and ``y`` lists, at 10 Hz unless it
    says otherwise. Anything that is not a usable trajectory earns 0 and sets ``trajectory_unparseable``.
    """
    from cookbook_reward.trajectory import TrajectoryError, trajectory_from_data, verify_trajectory

    text = _waypoint_text(completion)
    unusable: RewardResult = (0.0, {"trajectory_unparseable": 1.0})
    if text is None:
        return unusable
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, an integer over Python's 4300 digits, nested too deep
        return unusable
    try:
        report = verify_trajectory(trajectory_from_data(data), verifier)
    except TrajectoryError:  # no trajectory, or one the checks cannot judge (too few or repeated timestamps)
        return unusable
    metrics = {check.name: float(check.passed) for check in report.checks}
    return report.reward, {**metrics, "trajectory_unparseable": 0.0}


def _completion_text(completion: object) -> str:
    """Text of a TRL completion: a string, or the last assistant message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                return _content_text(message.get("content"))
    raise TypeError(f"expected a completion string or a list of messages with an assistant turn, got {completion!r}")


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text")
    raise TypeError(f"unsupported message content {content!r}")


def _column(kwargs: dict[str, object], *names: str) -> Sequence[object] | None:
    for name in names:
        values = kwargs.get(name)
        if isinstance(values, list | tuple):
            return values
    return None


def as_trl(fn: RewardFn) -> Callable[..., list[float]]:
    """`fn` as a TRL reward function: ``(completions, **columns) -> list[float]``.

    Each completion is scored with its item of the ``reference`` column (else ``solution``) and of ``prompts``;
    metrics are dropped, since TRL logs each reward function's mean under its ``__name__``, which is kept.
    """

    def batch(completions: Sequence[object], **kwargs: object) -> list[float]:
        references = _column(kwargs, "reference", "solution")
        prompts = _column(kwargs, "prompts")
        rewards = []
        for index, completion in enumerate(completions):
            reference = None if references is None else references[index]
            prompt = None if prompts is None else prompts[index]
            result = fn(_completion_text(completion), reference, prompt=prompt)
            rewards.append(float(result[0] if isinstance(result, tuple) else result))
        return rewards

    batch.__name__ = batch.__qualname__ = getattr(fn, "__name__", "reward")
    return batch
