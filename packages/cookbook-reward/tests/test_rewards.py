import email.message
import json
import pickle
import socket
import subprocess
import sys
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cookbook_reward.rewards import (
    RemoteRewardError,
    _retry_after,
    as_trl,
    choice_accuracy_reward,
    format_reward,
    make_remote_reward,
    remote_reward,
    score_accuracy_reward,
    trajectory_reward,
)

# The keyword arguments cosmos-rl passes to every reward function.
COSMOS_KWARGS: dict[str, Any] = {
    "prompt": "Does this video adhere to the physical laws?",
    "data_packer": None,
    "config": None,
}


def answer(text: str, thinking: str = "The ball falls and bounces.") -> str:
    return f"<think>\n{thinking}\n</think>\n\n<answer>\n{text}\n</answer>"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (answer("4"), 1.0),
        ("<think></think>\n\n<answer></answer>", 1.0),
        ("<think>a < b && c</think>\n\n<answer>3</answer>", 1.0),
        ("<think>x</think>\n<answer>3</answer>", 0.0),  # one newline, not two
        ("<think>x</think><answer>3</answer>", 0.0),
        (answer("4") + " I hope this helps.", 0.0),  # text after the answer
        (answer("4") + "\n", 0.0),
        (answer("4") + "\n\n<answer>5</answer>", 0.0),  # two answer blocks
        ("<think>x</think>\n\n<answer>3</answer>\n\n<answer>5</answer>", 0.0),
        ("<think>a<think>b</think>c</think>\n\n<answer>3</answer>", 0.0),  # nested thinking
        ("<think>x</think>\n\n<answer>3</answer><think>y</think>", 0.0),
        (" " + answer("4"), 0.0),
        ("<answer>4</answer>", 0.0),
        ("4", 0.0),
    ],
)
def test_format_reward_wants_exactly_one_think_then_one_answer(completion: str, expected: float) -> None:
    assert format_reward(completion, "4", **COSMOS_KWARGS) == (expected, {"format": expected})


@pytest.mark.parametrize("reference", [4, "4", "<answer>\n4\n</answer>"])
@pytest.mark.parametrize(("predicted", "expected"), [("4", 1.0), ("3", 0.5), ("5", 0.5), ("2", 0.0), ("1", 0.0)])
def test_score_accuracy_is_dense(reference: object, predicted: str, expected: float) -> None:
    reward, metrics = score_accuracy_reward(answer(predicted), reference, **COSMOS_KWARGS)

    assert reward == expected
    assert metrics == {"score_accuracy": expected, "score_exact": float(expected == 1.0), "score_unparseable": 0.0}


def test_score_accuracy_reads_a_reason2_plain_answer() -> None:
    assert score_accuracy_reward("The cup tips over naturally.\n5", "5")[0] == 1.0


@pytest.mark.parametrize(
    "completion",
    [answer("four"), answer("6"), answer("3.5"), "<think>cut off before answering", "<answer>4", ""],
)
def test_an_unparseable_score_earns_nothing_and_is_flagged(completion: str) -> None:
    reward, metrics = score_accuracy_reward(completion, "<answer>\n4\n</answer>")

    assert reward == 0.0
    assert metrics["score_unparseable"] == 1.0


def test_a_reference_without_a_score_is_an_error() -> None:
    with pytest.raises(ValueError, match="no score"):
        score_accuracy_reward(answer("4"), "<answer>\nmaybe\n</answer>")


@pytest.mark.parametrize(
    ("completion", "reference", "expected", "unparseable"),
    [
        (answer("B"), "B", 1.0, 0.0),
        (answer("(B) the red cup"), "<answer>\nB\n</answer>", 1.0, 0.0),
        (answer("C. the blue cup"), "B", 0.0, 0.0),
        (answer("the red cup"), "B", 0.0, 1.0),
        (answer("A car hits the cup"), "A", 0.0, 1.0),
    ],
)
def test_choice_accuracy(completion: str, reference: str, expected: float, unparseable: float) -> None:
    reward, metrics = choice_accuracy_reward(completion, reference, **COSMOS_KWARGS)

    assert reward == expected
    assert metrics == {"choice_accuracy": expected, "choice_unparseable": unparseable}


CHECKS = ["lon_acceleration", "lat_acceleration", "jerk", "lon_jerk", "yaw_rate", "yaw_acceleration", "speed"]


def test_trajectory_reward_verifies_the_waypoints_in_the_answer() -> None:
    cruise = json.dumps([[float(i), 0.0] for i in range(64)])  # 10 m/s straight ahead at 10 Hz

    reward, metrics = trajectory_reward(answer(cruise), None, **COSMOS_KWARGS)

    assert reward == 1.0
    assert metrics == {**dict.fromkeys([*CHECKS, "curvature"], 1.0), "trajectory_unparseable": 0.0}


def test_trajectory_reward_counts_the_failed_checks() -> None:
    speeding = {"x": [5.0 * i for i in range(64)], "y": [0.0] * 64}  # 50 m/s

    reward, metrics = trajectory_reward(f"```json\n{json.dumps(speeding)}\n```")

    assert reward == pytest.approx(7 / 8)
    assert metrics["speed"] == 0.0
    assert all(metrics[name] == 1.0 for name in CHECKS if name != "speed")


@pytest.mark.parametrize(
    "completion",
    [
        answer("turn left at the junction"),
        answer("[[0, 0], [1, 0], [2, 0]]"),  # too short to judge
        answer("[[0, 0], [1,"),
        answer('{"x": [0, 1, 2, 3]}'),
        answer(f"[[0, 0], [1, 0], [2, 0], [{'9' * 5000}, 0]]"),  # over Python's 4300-digit integer limit
        "<think>planning the path",
    ],
)
def test_unusable_waypoints_earn_nothing(completion: str) -> None:
    assert trajectory_reward(completion) == (0.0, {"trajectory_unparseable": 1.0})


FAULTS = {"/broken": (500, b"model not loaded"), "/garbage": (200, b"<html>hello</html>")}
"""Routes of the service below that always answer the same wrong thing."""


class RewardService:
    """A real reward service on 127.0.0.1 speaking the OpenRLHF protocol; it records what it was sent."""

    token = "s3cret"

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.busy_answers = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                for prefix, (status, text) in FAULTS.items():
                    if self.path.startswith(prefix):
                        return self._send(status, text)
                if self.path.startswith("/full"):  # a Ray Serve proxy whose replicas are all full
                    service.busy_answers += 1
                    return self._send(503, b"Service Unavailable")
                if self.path.startswith("/busy") and service.busy_answers < 2:  # a queue full for a moment
                    service.busy_answers += 1
                    return self._send(429, b"busy: 64 items waiting, limit 64", {"Retry-After": "0"})
                if self.headers.get("Authorization") != f"Bearer {service.token}":
                    return self._send(401, b"bad token")
                if self.path.removeprefix("/busy") != "/get_reward":
                    return self._send(404, b"no such route")
                request = json.loads(body)
                service.requests.append(request)
                reward = len(request["query"][0]) / 100
                return self._send(200, json.dumps({"rewards": [reward], "scores": [reward]}).encode())

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def service() -> Iterator[RewardService]:
    service = RewardService()
    thread = threading.Thread(target=service.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


def test_remote_reward_speaks_the_openrlhf_protocol(service: RewardService) -> None:
    completion = answer("4")

    reward, metrics = remote_reward(
        completion, 4, base_url=service.url + "/", token=service.token, **COSMOS_KWARGS, tokenizer=None
    )

    assert reward == len(completion) / 100
    assert metrics == {"remote_reward": reward, "remote_reward_failed": 0.0}
    assert service.requests == [
        {"query": [completion], "prompts": [COSMOS_KWARGS["prompt"]], "labels": ["4"]},
    ]


def test_remote_reward_takes_the_token_from_the_environment(
    service: RewardService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOKBOOK_REWARD_TOKEN", service.token)

    reward, _ = remote_reward("abcd", base_url=service.url)

    assert reward == 0.04
    assert service.requests == [{"query": ["abcd"], "prompts": [""], "labels": [""]}]


@pytest.mark.parametrize(
    ("path", "token", "message"),
    [
        ("/broken", "s3cret", "answered HTTP 500: model not loaded"),
        ("", "wrong", "answered HTTP 401: bad token"),
        ("/garbage", "s3cret", 'expected JSON {"rewards": [<one number>]}'),
    ],
)
def test_remote_reward_failures_name_the_url(service: RewardService, path: str, token: str, message: str) -> None:
    with pytest.raises(RemoteRewardError) as caught:
        remote_reward("abcd", base_url=service.url + path, token=token)

    assert f"{service.url}{path}/get_reward" in str(caught.value)
    assert message in str(caught.value)


def test_a_busy_service_is_asked_again(service: RewardService) -> None:
    reward, _ = remote_reward("abcd", base_url=service.url + "/busy", token=service.token, timeout_s=30)

    assert reward == 0.04
    assert service.busy_answers == 2  # two 429s with Retry-After: 0, then the answer
    assert service.requests == [{"query": ["abcd"], "prompts": [""], "labels": [""]}]


@pytest.mark.parametrize(("given", "attempt", "wait"), [("0", 0, 0.1), ("3", 0, 3.0), ("600", 0, 10.0), (None, 2, 1.0)])
def test_the_wait_before_asking_again_is_bounded(given: str | None, attempt: int, wait: float) -> None:
    headers = email.message.Message()
    if given is not None:
        headers["Retry-After"] = given
    busy = urllib.error.HTTPError("http://reward/get_reward", 429, "busy", headers, None)

    assert _retry_after(busy, attempt) == wait


def test_a_service_busy_past_the_timeout_is_an_error(service: RewardService) -> None:
    with pytest.raises(RemoteRewardError) as caught:
        remote_reward("abcd", base_url=service.url + "/full", token=service.token, timeout_s=1.0)

    assert f"{service.url}/full/get_reward answered HTTP 503: Service Unavailable" in str(caught.value)
    assert service.busy_answers > 1  # asked again with a growing wait before giving up
    assert f"after {service.busy_answers} tries in 1 s" in str(caught.value)


def test_an_unreachable_service_is_an_error(service: RewardService) -> None:
    url = service.url
    service.server.shutdown()
    service.server.server_close()

    with pytest.raises(RemoteRewardError, match="could not be reached"):
        remote_reward("abcd", base_url=url, timeout_s=5)


def test_a_service_that_does_not_answer_in_time_is_busy_not_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog, never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(RemoteRewardError) as caught:
            remote_reward("abcd", base_url=url, timeout_s=0.5)

    assert str(caught.value) == (
        f"reward service {url}/get_reward did not answer within 0.5 s (the service may be busy; raise timeout_s)"
    )


def test_a_bound_remote_reward_has_a_name_and_survives_pickling(service: RewardService) -> None:
    fn = pickle.loads(pickle.dumps(make_remote_reward(service.url, token=service.token, name="physics_judge")))

    reward, _ = fn("abcdef", "<answer>\n2\n</answer>", **COSMOS_KWARGS, tokenizer=None)

    assert fn.__name__ == "physics_judge"
    assert reward == 0.06
    assert service.requests[0]["labels"] == ["<answer>\n2\n</answer>"]


def test_trl_adapter_scores_a_batch_of_conversations(service: RewardService) -> None:
    score = as_trl(score_accuracy_reward)
    remote = as_trl(make_remote_reward(service.url, token=service.token))
    completions = [
        [{"role": "assistant", "content": answer("4")}],
        [{"role": "assistant", "content": [{"type": "text", "text": answer("2")}]}],
        [
            {"role": "assistant", "content": "draft"},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "???"},
        ],
    ]
    prompts = [[{"role": "user", "content": "Rate it."}]] * 3

    rewards = score(prompts=prompts, completions=completions, solution=["4", "3", "4"], completion_ids=[[1]] * 3)

    assert rewards == [1.0, 0.5, 0.0]
    assert score.__name__ == "score_accuracy_reward"
    assert remote(completions=["ab", "abc"], prompts=["p1", "p2"], reference=[1, 2]) == [0.02, 0.03]
    assert [request["labels"] for request in service.requests] == [["1"], ["2"]]
    assert [request["prompts"] for request in service.requests] == [["p1"], ["p2"]]


def test_a_chat_prompt_reaches_the_service_as_its_user_text(service: RewardService) -> None:
    remote = as_trl(make_remote_reward(service.url, token=service.token))
    prompts = [
        [
            {"role": "system", "content": "You judge videos."},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "A cup falls off a table."}]},
        ],
        [{"role": "user", "content": "A ball rolls."}],
    ]

    remote(completions=["a.mp4", "b.mp4"], prompts=prompts)

    assert [request["prompts"] for request in service.requests] == [["A cup falls off a table."], ["A ball rolls."]]


def test_trl_adapter_works_without_references() -> None:
    assert as_trl(format_reward)(completions=[answer("1"), "1"]) == [1.0, 0.0]


def test_importing_the_rewards_loads_no_heavy_library() -> None:
    code = (
        "import sys, cookbook_reward.rewards\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"
