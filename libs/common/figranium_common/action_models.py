"""The actions of a task: one model per action type, told apart by ``type``.

Each model names the fields its type reads, with their types. A field the type cannot run
without is required, though it may be empty: Figranium's editor saves a new action at
once, with ``selector`` and ``value`` still "" (and ``varName`` for ``set``/``merge``).
Fields a type does not read are kept as given: Figranium's clients send them (its MCP
server puts ``clickType`` and ``typeMode`` on every action) and read them back.

``ACTION_MODELS`` maps every type to its model, for whatever lists the types and their
fields (a console's action palette, say).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from figranium_common.jsontypes import GivenJson

ConditionOp = Literal[
    "equals",
    "not_equals",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_true",
    "is_false",
    "exists",
    "not_exists",
]
# Text or a number, never a boolean: seconds, pixels, a count, the text to type.
Scalar = StrictStr | StrictInt | StrictFloat
# A JSON value but null: what ``set``, ``merge`` and ``csv`` take as they are.
NonNullJson = str | int | float | bool | list[GivenJson] | dict[str, GivenJson]


class ActionBase(BaseModel):
    """What every action has; ``timeout`` (ms) bounds each of its page operations.

    As in Figranium (``timeout || 10000``), a fraction of a millisecond is kept and 0 means
    the default (``ACTION_TIMEOUT_MS``), never "no limit".
    """

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    id: str | None = None
    """The action's own id, named in its log lines and errors."""
    type: str
    disabled: bool = False
    """Skip the action when the task runs."""
    timeout: Annotated[float, Field(ge=0, le=3_600_000)] | None = None
    """Milliseconds each page operation may take; 0 or none: ``ACTION_TIMEOUT_MS``."""


class ElementAction(ActionBase):
    """An action on the element ``selector`` names (a CSS selector; {$variables} allowed)."""

    selector: str
    """The element's CSS selector ({$variables} allowed)."""


class PageOrElementAction(ActionBase):
    """An action on the element ``selector`` names, else on the page (or the focus)."""

    selector: str | None = None
    """The element's CSS selector; none: the page (or the focused element)."""


class StoringAction(ActionBase):
    """An action whose output is also kept in the variable ``varName``, when given."""

    varName: str | None = None
    """The variable the action's output is also kept in."""


class NavigateAction(ActionBase):
    type: Literal["navigate", "goto"]
    value: str
    """The URL to go to."""


class ClickAction(ElementAction):
    type: Literal["click"]
    clickType: Literal["single", "double", "right"] | None = None
    """Which click; none: single."""


class TypeAction(PageOrElementAction):
    type: Literal["type", "fill"]
    value: Scalar
    """The text to type."""
    typeMode: Literal["append", "replace"] | None = None
    """Add to the field's text, or replace it; none: replace."""


class HoverAction(ElementAction):
    type: Literal["hover"]


class PressAction(PageOrElementAction):
    type: Literal["press"]
    key: str | None = None
    """The key to press: Enter, Control+A, ..."""
    value: Scalar | None = None
    """The key, when ``key`` is empty."""


class SelectAction(ElementAction):
    type: Literal["select"]
    value: Scalar
    """The option to choose: its value, else its label."""


class CheckAction(ElementAction):
    type: Literal["check", "uncheck"]


class DragAndDropAction(ElementAction):
    type: Literal["drag_and_drop"]
    targetSelector: str | None = None
    """The CSS selector of the element to drop on; the run refuses an empty one."""


class ReloadAction(ActionBase):
    type: Literal["reload"]


class SecondsAction(ActionBase):
    """An action that waits at most ``value`` seconds, or a default of its type's."""

    value: Scalar | None = None
    """Seconds to wait at most; none: the type's default."""


class WaitAction(SecondsAction):
    """Waits ``value`` seconds (2)."""

    type: Literal["wait"]


class WaitSelectorAction(ElementAction, SecondsAction):
    """Waits until the element shows, at most ``value`` seconds (10)."""

    type: Literal["wait_selector"]


class WaitDownloadsAction(SecondsAction):
    """Waits for the downloads under way, at most ``value`` seconds (30)."""

    type: Literal["wait_downloads"]


class ScrollAction(PageOrElementAction):
    type: Literal["scroll"]
    value: Scalar | None = None
    """Pixels to scroll by; none: 500."""
    key: str | None = None
    """How long the scroll takes, in ms; none: 500."""


class ScreenshotAction(ActionBase):
    type: Literal["screenshot"]
    label: str | None = None
    """The end of the screenshot's file name."""
    value: Scalar | None = None
    """The end of the file name, when ``label`` is empty."""


class JavascriptAction(ActionBase):
    type: Literal["javascript"]
    value: str
    """The code: an async function's body (with ``return``), or an expression."""


class GetContentAction(PageOrElementAction, StoringAction):
    type: Literal["get_content"]


class SetAction(ActionBase):
    type: Literal["set"]
    varName: str
    """The variable to set."""
    value: NonNullJson | None = None
    """The value; text is parsed as a boolean, a number or JSON, else kept as text."""


class MergeAction(StoringAction):
    type: Literal["merge"]
    value: NonNullJson
    """Comma-separated variable names or literals, or the values themselves."""


class CsvAction(StoringAction):
    type: Literal["csv"]
    value: NonNullJson | None = None
    """CSV text or a variable's name; none: ``{$block.output}``."""


class HttpRequestAction(StoringAction):
    type: Literal["http_request"]
    value: str
    """The URL to call."""
    method: str | None = None
    """The HTTP method; none: GET."""
    headers: str | dict[str, GivenJson] | None = None
    """The request's headers: an object, or one as JSON text."""
    body: str | dict[str, GivenJson] | list[GivenJson] | None = None
    """The request's body (POST, PUT, PATCH, DELETE): text, or JSON."""


class ConditionalAction(ActionBase):
    """``if`` and ``while``: a JavaScript expression in ``value``, or a structured
    comparison of ``conditionVar`` (a variable) with ``conditionValue``."""

    value: str | None = None
    """A JavaScript expression, when no structured condition is given."""
    conditionVarType: Literal["string", "number", "boolean", "selector"] | None = None
    """How to compare; selector: whether the element ``selector`` names is on the page."""
    selector: str | None = None
    """The element's CSS selector, for the ``selector`` comparison."""
    conditionVar: str | None = None
    """What to compare: ``{$name}`` or a literal."""
    conditionOp: ConditionOp | None = None
    """The comparison; none: equals (is_true for a boolean, exists for an element)."""
    conditionValue: str | int | float | bool | None = None
    """What ``conditionVar`` is compared with."""


class IfAction(ConditionalAction):
    """Runs its block when the condition holds, else its ``else`` part, if any."""

    type: Literal["if"]


class WhileAction(ConditionalAction):
    """Runs its block again and again while the condition holds."""

    type: Literal["while"]


class ElseAction(ActionBase):
    type: Literal["else"]


class EndAction(ActionBase):
    type: Literal["end"]


class RepeatAction(ActionBase):
    """Runs its block ``value`` times."""

    type: Literal["repeat"]
    value: Scalar
    """How many times to run the block."""


class ForeachAction(PageOrElementAction, StoringAction):
    """Over the elements ``selector`` matches, else the list in variable ``varName``, else
    ``value`` (a list, a variable's name, or JSON or lines of text)."""

    type: Literal["foreach"]
    selector: str | None = None
    """The CSS selector of the elements to go over; none: a list (``varName``, ``value``)."""
    value: str | list[GivenJson] | None = None
    """A list, a variable's name, or JSON or lines of text."""


class OnErrorAction(ActionBase):
    """Runs its block, and ends the run, when a later action fails."""

    type: Literal["on_error"]


class StopAction(ActionBase):
    type: Literal["stop"]
    value: str | None = None
    """error ends the run as failed; anything else, as a success."""


class StartAction(ActionBase):
    type: Literal["start"]
    value: str
    """The id of the saved task to run."""


class CaptchaAction(PageOrElementAction, StoringAction):
    """Acts on a captcha widget (reCAPTCHA, hCaptcha, Turnstile) inside ``selector``, else
    anywhere on the page; ``captchaType`` empty: whichever is found. The result is also kept
    in ``varName``. ``timeout`` (ms) bounds the whole action: 0 or none, 120000."""

    selector: str | None = None
    """The CSS selector of the element the widget is in; none: anywhere on the page."""
    captchaType: str | None = None
    """recaptcha_v2, recaptcha_v3, hcaptcha or turnstile ({$variables} allowed)."""


class WaitCaptchaAction(CaptchaAction):
    """Waits until a widget is ready: ``{ready, challenge, duration, siteKey}``."""

    type: Literal["wait_captcha"]


class SolveCaptchaAction(CaptchaAction):
    """Has the configured solving service solve the widget, and puts its token in the page."""

    type: Literal["solve_captcha"]


class UploadAction(PageOrElementAction):
    """Puts the next file of cabinet ``cabinetId`` into the file input ``selector``
    (the newest not yet uploaded; ``value`` and ``count`` are this server's extensions)."""

    type: Literal["upload"]
    selector: str | None = None
    """The CSS selector of the file input (or of what opens a file chooser)."""
    cabinetId: str | None = None
    """The cabinet the file comes from; none, or an unknown id: the default cabinet."""
    markAsUploaded: bool = False
    """Mark the file uploaded when the run's result is stored, not at ``finalize_uploads``."""
    value: Scalar | None = None
    """A glob the file's name must match (``*.csv``, in any case); none: any file."""
    count: Scalar | None = None
    """How many files an input that takes several gets: a number, or all; none: 1."""


class FinalizeUploadsAction(ActionBase):
    """Marks the files this run uploaded as uploaded in their cabinets."""

    type: Literal["finalize_uploads"]


class DoNothingAction(ActionBase):
    type: Literal["do_nothing", "noop", "pass"]


AnyAction = (
    NavigateAction
    | ClickAction
    | TypeAction
    | HoverAction
    | PressAction
    | SelectAction
    | CheckAction
    | DragAndDropAction
    | ReloadAction
    | WaitAction
    | WaitSelectorAction
    | WaitDownloadsAction
    | ScrollAction
    | ScreenshotAction
    | JavascriptAction
    | GetContentAction
    | SetAction
    | MergeAction
    | CsvAction
    | HttpRequestAction
    | IfAction
    | ElseAction
    | EndAction
    | WhileAction
    | RepeatAction
    | ForeachAction
    | OnErrorAction
    | StopAction
    | StartAction
    | WaitCaptchaAction
    | SolveCaptchaAction
    | UploadAction
    | FinalizeUploadsAction
    | DoNothingAction
)
Action = Annotated[AnyAction, Field(discriminator="type")]

ACTION_MODELS: dict[str, type[ActionBase]] = {
    kind: model
    for model in get_args(AnyAction)
    for kind in get_args(model.model_fields["type"].annotation)
}
ACTION_TYPES: frozenset[str] = frozenset(ACTION_MODELS)


def _as_before(errors: ValidationError) -> ValidationError:
    """The errors of a list of actions as the one flat action model of earlier releases
    gave them, which clients may match: ``[3].clickType``, not ``[3].click.clickType``
    (the union's tag), and an unknown or missing ``type`` as an error of ``[3].type``."""
    details: list[InitErrorDetails] = []
    for error in errors.errors():
        loc, given = error["loc"], error["input"]
        kind, message = error["type"], error["msg"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "type")
            kind, message, given = _type_problem(given)
        elif len(loc) >= 2:
            loc = (loc[0], *loc[2:])
        details.append(
            InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=given)
        )
    return ValidationError.from_exception_data(errors.title, details)


def _type_problem(action: object) -> tuple[str, str, object]:
    if not isinstance(action, dict) or "type" not in action:
        return "missing", "Field required", action
    kind = action["type"]
    if not isinstance(kind, str):
        return "string_type", "Input should be a valid string", kind
    known = ", ".join(sorted(ACTION_TYPES))
    return "value_error", f"Value error, unknown action type {kind!r}; known types: {known}", kind


def _check_actions(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    try:
        return handler(value)
    except ValidationError as exc:
        raise _as_before(exc) from None


# A task's ``actions``.
Actions = Annotated[list[Action], WrapValidator(_check_actions)]
