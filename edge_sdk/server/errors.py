"""Errors as the OpenAI API returns them: a status code and ``{"error": {"message", "type", "param", "code"}}``.

Which status a failure gets:

* 400 `bad_request`: the body is not what the endpoint takes (not JSON, not an object, a field of the wrong
  type, a required field missing, an option this server does not offer such as ``n`` > 1);
* 401: no API key, or the wrong one; 404: no such route, or a model this server does not serve;
* 408: the request body did not arrive in time; 413: the body is larger than the limit;
* 422 `unprocessable`: a request of the right shape whose values cannot be served (a temperature < 0, a
  prompt longer than the context, an invalid JSON Schema, a tool_choice naming no tool): every
  `edge_sdk.InvalidArgumentError` and `ContextOverflowError`;
* 503: the queue is full, the model is still loading, or the server is shutting down (with Retry-After);
* 500: anything else, with a message but never a traceback (that goes to the server's log).

Example::

    raise APIError(422, "temperature must be >= 0", param="temperature")
    error_for(ContextOverflowError("the prompt has 300 tokens ..."))   # APIError(422, code="context_length_exceeded")
"""

from __future__ import annotations

from typing import Any

from ..errors import BusyError, ContextOverflowError, EdgeSDKError, InvalidArgumentError, PackageChangedError

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
         405: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
         422: "invalid_request_error", 500: "server_error", 503: "server_error"}


class APIError(Exception):
    """A failure answered as an OpenAI error object with `status`; `headers` go with the response."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, code={self.code!r})"


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param, code="invalid_request")


def unprocessable(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(422, message, param=param, code=code)


def unavailable(message: str, code: str, retry_after: int = 1) -> APIError:
    return APIError(503, message, code=code, headers={"Retry-After": str(max(1, int(retry_after)))})


def error_for(e: BaseException) -> APIError:
    """The API error an exception raised while serving a request stands for."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, ContextOverflowError):
        return unprocessable(str(e), param="messages", code="context_length_exceeded")
    if isinstance(e, InvalidArgumentError):
        return unprocessable(str(e))
    if isinstance(e, PackageChangedError):
        return APIError(500, f"the model's files changed on disk; restart the server: {e}", code="model_changed")
    if isinstance(e, BusyError):
        return unavailable(str(e), "busy")
    if isinstance(e, EdgeSDKError):
        return APIError(500, f"{type(e).__name__}: {e}", code="model_error")
    return APIError(500, "internal error while serving the request (see the server's log)", code="internal_error")
