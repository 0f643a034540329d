"""The root of the domain error hierarchy; boundaries translate these into HTTP or outcomes."""

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
