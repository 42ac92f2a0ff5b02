"""The live plane's error type: every refusal is an HTTP status, a stable code and a message saying what to fix.

Services raise :class:`ApiError`; the API turns it into ``{"error": {"code", "message"}}`` with its status
(always 4xx for something a caller did). The CLI prints the message and exits 2.
"""

from __future__ import annotations

from typing import Any

from superfactory.errors import SuperfactoryError


class ApiError(SuperfactoryError):
    """A refusal with an HTTP ``status``, a machine ``code`` and a human ``message``."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def not_found(what: str, ident: object) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"no {what} {ident!r} (or it belongs to another tenant)")
