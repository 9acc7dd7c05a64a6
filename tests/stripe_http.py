"""A scripted `stripe.HTTPClient`: the SDK's own request, retry and error code runs unchanged
above it, for the rare answers (error shapes, broken bodies, lost connections) the emulator
never gives."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import stripe
from requests.structures import CaseInsensitiveDict


@dataclass(frozen=True)
class Answer:
    """One HTTP response; a `str` body is sent as is, anything else as its JSON."""

    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: dict[str, str]


class CannedHTTPClient(stripe.HTTPClient):
    """Plays its answers in order, the last one for every further request; an exception in the
    script is raised as a transport would raise it (`stripe.APIConnectionError`)."""

    name = "canned"

    def __init__(self, *answers: Answer | Exception) -> None:
        super().__init__()
        self.script: list[Answer | Exception] = list(answers) or [Answer()]
        self.calls: list[Call] = []

    def request(
        self, method: str, url: str, headers: Any, post_data: Any = None, *, _usage: Any = None
    ) -> tuple[str, int, CaseInsensitiveDict[str]]:
        self.calls.append(Call(method, url, dict(headers or {})))
        answer = self.script[min(len(self.calls), len(self.script)) - 1]
        if isinstance(answer, Exception):
            raise answer
        body = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
        return body, answer.status, CaseInsensitiveDict(answer.headers)

    def request_stream(
        self, method: str, url: str, headers: Any, post_data: Any = None, *, _usage: Any = None
    ) -> tuple[io.BytesIO, int, CaseInsensitiveDict[str]]:
        # The same answers, as the stream a streamed request reads (the gateway's list calls).
        body, status, headers = self.request(method, url, headers, post_data)
        return io.BytesIO(body.encode("utf-8")), status, headers

    def _sleep_time_seconds(self, num_retries: int) -> float:
        # The SDK waits 0.5-5 s between its retries; the count of retries is what tests check.
        return 0.0

    def close(self) -> None:
        return None
