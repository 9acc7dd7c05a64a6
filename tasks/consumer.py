"""The worker's message consumer: Celery's, except that a message it cannot decode is logged in
one short record, since Celery would log every header in full and a sender controls their size."""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer.consumer import Consumer, dump_body

from tasks.arguments import shown

log = logging.getLogger(__name__)

# Headers Celery sets are a dozen; a message with more is not worth reading further.
_HEADERS_SHOWN = 20


class FcsyncConsumer(Consumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        headers = list((message.headers or {}).items())
        log.critical(
            "cannot decode a message, discarded: %s [type:%r encoding:%r headers:%s] body: %s",
            shown(exc),
            shown(message.content_type),
            shown(message.content_encoding),
            ", ".join(f"{shown(k)}={shown(v)}" for k, v in headers[:_HEADERS_SHOWN]),
            dump_body(message, message.body),
        )
        # As Celery does: acknowledged, or it would come back forever.
        message.ack()
