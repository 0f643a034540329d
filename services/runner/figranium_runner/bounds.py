"""Limits on the work a task, or a page it visits, can make a runner do.

Each limit is a setting, and each error names its setting, so whoever reads the run's log
knows what to raise when a task really needs more.
"""

from __future__ import annotations

from dataclasses import dataclass

from figranium_common.errors import FigraniumError


class LimitExceeded(FigraniumError):
    code = "LIMIT_EXCEEDED"


@dataclass(frozen=True)
class Bounds:
    regex_timeout_ms: int = 250  # RUNNER_REGEX_TIMEOUT_MS
    max_variable_bytes: int = 8 * 1024 * 1024  # RUNNER_MAX_VARIABLE_BYTES
    max_variables_bytes: int = 64 * 1024 * 1024  # RUNNER_MAX_VARIABLES_BYTES
    max_log_lines: int = 5000  # RUNNER_MAX_LOG_LINES
    max_log_line_chars: int = 2000  # RUNNER_MAX_LOG_LINE_CHARS


def json_size(value: object, limit: int) -> int:
    """About how many bytes ``value`` takes as JSON; stops counting once past ``limit``.

    Walks without recursion and stops early, because the value may be a list that shares
    one big item a million times (``merge "{$a},{$a}"`` in a loop): serializing it just to
    measure it would be the very work the limit is there to prevent."""
    total = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += (len(item) if item.isascii() else len(item.encode())) + 2
        elif isinstance(item, dict):
            total += 2 + len(item)
            for key, child in item.items():
                total += len(str(key)) + 3
                stack.append(child)
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        elif item is None or isinstance(item, bool):
            total += 5
        else:
            total += len(str(item))
        if total > limit:
            return total
    return total


def too_large(what: str, limit: int) -> LimitExceeded:
    return LimitExceeded(f"{what} is larger than RUNNER_MAX_VARIABLE_BYTES ({limit} bytes)")


def check_size(value: object, what: str, limit: int) -> int:
    """``value``'s size, or LimitExceeded past RUNNER_MAX_VARIABLE_BYTES."""
    size = json_size(value, limit)
    if size > limit:
        raise too_large(what, limit)
    return size


@dataclass
class VariableBudget:
    """What the variables a run's actions stored weigh, by name."""

    bounds: Bounds
    sizes: dict[str, int]

    def admit(self, name: str, value: object) -> None:
        size = check_size(value, f"the value for {name!r}", self.bounds.max_variable_bytes)
        total = sum(self.sizes.values()) - self.sizes.get(name, 0) + size
        if total > self.bounds.max_variables_bytes:
            raise LimitExceeded(
                f"storing {name!r} would take the run's variables past"
                f" RUNNER_MAX_VARIABLES_BYTES ({self.bounds.max_variables_bytes} bytes)"
            )
        self.sizes[name] = size


@dataclass
class LogBudget:
    """The log lines a run may still say; shared with the tasks it starts."""

    bounds: Bounds
    said: int = 0

    def admit(self, line: str, *, always: bool = False) -> str | None:
        """The line as it may be said (cut when long), or None once the run said enough.

        ``always`` lines (how the run ended) are said past the limit: they are the ones
        whoever reads the log needs most."""
        limit = self.bounds.max_log_line_chars
        if len(line) > limit:
            suffix = f"… [cut at RUNNER_MAX_LOG_LINE_CHARS ({limit})]"
            line = line[: max(0, limit - len(suffix))] + suffix
        if always:
            return line
        self.said += 1
        most = self.bounds.max_log_lines
        if self.said < most:
            return line
        if self.said == most:
            return (
                f"[ERROR] the run said RUNNER_MAX_LOG_LINES ({most}) log lines;"
                " later ones are dropped"
            )
        return None
