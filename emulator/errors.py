"""Stripe's error responses: the exception the handlers raise and the JSON body it becomes."""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://docs.stripe.com/error-codes/"


class StripeError(Exception):
    """An error Stripe would answer with; rendered as {"error": {...}} at the HTTP edge."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = DOC_BASE + self.code.replace("_", "-")
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def unknown(param: str) -> StripeError:
    return StripeError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def invalid(param: str, message: str, code: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def no_such(kind: str, object_id: str, *, param: str, status: int = 404) -> StripeError:
    return StripeError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://docs.stripe.com/api "
        "or we can help at https://support.stripe.com/.",
    )
