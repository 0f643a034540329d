"""The root of the domain error hierarchy, which boundaries translate into HTTP or outcomes;
and how any exception is told in a log line or an answer."""

from __future__ import annotations


class FigraniumError(Exception):
    """Base class for every error the services raise on purpose."""

    code = "INTERNAL_ERROR"

    def __init__(self, details: str, *, code: str | None = None) -> None:
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code


class InvalidUrlError(FigraniumError):
    code = "INVALID_URL"


class TooManyRedirects(FigraniumError):
    code = "TOO_MANY_REDIRECTS"


def describe(exc: BaseException) -> str:
    """The exception's message, for a log line or an answer; its type's name when it has
    none (a bare ``TimeoutError`` says nothing)."""
    return str(exc) or type(exc).__name__


def first_line(exc: BaseException) -> str:
    """:func:`describe` cut to its first line: Playwright's messages go on with a call log
    many lines long, which a run's log or an action's error does not want."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
