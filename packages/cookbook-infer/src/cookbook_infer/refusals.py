"""One-line causes for the requests a FastAPI server refuses on its own, before an endpoint runs.

FastAPI answers those in its own shape: ``{"detail": "Not Found"}`` for an unknown route, ``{"detail": "Method
Not Allowed"}``, 422 with a list of problems for a body that fails validation. A service with an error body of
its own renders them in its exception handlers with these helpers, so that a client reading one message (the
``openai`` package reads ``error.message``) learns which field is wrong and why, or which route does not exist.
A module of its own (not :mod:`cookbook_infer.serve`) so that other services can share it without the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from cookbook_data.schemas import problem_message

__all__ = ["describe_problem", "describe_problems", "describe_refusal", "problem_field"]

_NOT_AN_OBJECT = "the body must be a JSON object sent as application/json"
_WHOLE_BODY: dict[str, str] = {
    "missing": "the request has no body (send a JSON object)",
    "model_type": _NOT_AN_OBJECT,
    "model_attributes_type": _NOT_AN_OBJECT,  # FastAPI validates a body of another media type as bytes
}
"""Problems of a request's body as a whole (FastAPI's location ``("body",)``) that pydantic words for a Python
caller, in a client's words."""


def problem_field(problem: Mapping[str, Any], body: Any = None) -> str | None:
    """The dotted path of the field a validation problem concerns, without FastAPI's leading ``body``; None for
    a problem of the whole body (a model validator's, or JSON that does not parse: its location is a character
    offset, not a field).

    Given the request's ``body`` (FastAPI's ``RequestValidationError.body``), the path is the body's own: pydantic
    puts the name of the tagged union's member it tried into a location (``messages.0.content.parts.0.text.text``
    for the ``text`` of ``messages[0].content[0]``), a name the client never wrote."""
    if problem["type"] == "json_invalid":
        return None
    steps = list(problem["loc"])
    if steps[:1] == ["body"]:
        steps = steps[1:]
    if body is not None:
        lacked = steps[-1:] if problem["type"] == "missing" else []  # the field the object lacks
        steps = _body_path(body, steps[: len(steps) - len(lacked)]) + lacked
    return ".".join(str(step) for step in steps) or None


def _body_path(body: Any, steps: Sequence[str | int]) -> list[str | int]:
    """The steps of a location that lead through ``body``; the others are union members' names. A tagged union
    puts its member's name, the value of the object's ``type``, before that object's own fields, and the name can
    also be a field (the ``text`` part's ``text``): at each object it is skipped once, then fields are followed.
    A name that indexes nothing (the content union's ``parts`` for a list) is skipped too."""
    path: list[str | int] = []
    node, tag_seen = body, False
    for step in steps:
        if not tag_seen and isinstance(node, dict) and node.get("type") == step:
            tag_seen = True
        elif _holds(node, step):
            path.append(step)
            node, tag_seen = node[step], False
    return path


def _holds(node: Any, step: str | int) -> bool:
    """Whether ``step`` is a key of ``node``, a JSON object, or an index of ``node``, a JSON array."""
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def describe_problem(problem: Mapping[str, Any], body: Any = None) -> str:
    """One validation problem as ``field.path: message`` (the path through ``body`` where it is given, as in
    :func:`problem_field`), or as what is wrong with the body as a whole."""
    if problem["type"] == "json_invalid":
        return f"the body is not valid JSON: {problem['ctx']['error']} at character {problem['loc'][-1]}"
    if tuple(problem["loc"]) == ("body",) and problem["type"] in _WHOLE_BODY:
        return _WHOLE_BODY[problem["type"]]
    field, message = problem_field(problem, body), problem_message(problem)
    return f"{field}: {message}" if field is not None else message


def describe_problems(problems: Sequence[Mapping[str, Any]], body: Any = None) -> str:
    """Every problem of a request that failed validation, on one line."""
    return "; ".join(describe_problem(problem, body) for problem in problems) or "invalid request"


def describe_refusal(request: Request, error: HTTPException) -> str:
    """FastAPI's and Starlette's own refusals, naming the request: no such route (404), no such method (405,
    with the methods the route allows), or a body that cannot be parsed (400: not UTF-8, nested too deep),
    with the parser's reason."""
    message = f"{error.detail}: {request.method} {request.url.path}"
    if allowed := (error.headers or {}).get("Allow"):
        message += f" (allowed: {allowed})"
    if error.__cause__ is not None:
        message += f" ({error.__cause__})"
    return message
