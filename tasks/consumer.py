"""What the worker accepts as a task message. Celery's consumer stops the whole worker on a body
that is not `[args, kwargs, options]` (and again on each redelivery), and logs every header of
an undecodable message in full: both are refused here in one short record instead."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.consumer.consumer import Consumer, dump_body

from tasks.arguments import shown

log = logging.getLogger(__name__)

# Headers Celery sets are a dozen; a message with more is not worth reading further.
_HEADERS_SHOWN = 20


def check_envelope(message: Any, body: Any) -> None:
    """InvalidTaskError unless the message is one Celery's strategy and Request can unpack: the
    consumer then discards it with one ERROR record (the body cut to 1 kB by Celery)."""
    if body is not None:  # already decoded by the consumer (protocol 1)
        return
    payload = message.payload  # a DecodeError here is FcsyncConsumer.on_decode_error's
    if isinstance(payload, dict):  # a protocol-1 body in a protocol-2 message
        shaped = "id" in payload and isinstance(payload.get("args", []), list | tuple)
        shaped = shaped and isinstance(payload.get("kwargs", {}), dict)
    else:
        shaped = (
            isinstance(payload, list | tuple)
            and len(payload) == 3
            and isinstance(payload[0], list | tuple)
            and isinstance(payload[1], dict)
            and isinstance(payload[2], dict)
            and "id" in (message.headers or {})
        )
    if not shaped:
        raise InvalidTaskError("not a task message: the body must be [args, kwargs, options]")


def checked_strategy(handler: Callable[..., Any]) -> Callable[..., Any]:
    def handle(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        check_envelope(message, body)
        return handler(message, body, *args, **kwargs)

    return handle


class FcsyncConsumer(Consumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        headers = list((message.headers or {}).items())
        log.critical(
            "cannot decode a message, discarded: %s [type:%s encoding:%s headers:%s] body: %s",
            shown(exc),
            shown(message.content_type),
            shown(message.content_encoding),
            ", ".join(f"{shown(k)}={shown(v)}" for k, v in headers[:_HEADERS_SHOWN]),
            dump_body(message, message.body),
        )
        # As Celery does: acknowledged, or it would come back forever.
        message.ack()
