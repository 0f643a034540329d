"""The route contract: what every route accepts and answers, and the OpenAPI document.

Routes are recorded here as they are declared (``routing.Router``); the document is
generated from these records (the same pydantic models that validate requests), so the
spec cannot drift from the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue, models_json_schema

from figranium_common.jsontypes import JsonObject


class ErrorBody(BaseModel):
    """Every refusal: a stable code and a human explanation."""

    error: str
    details: str


@dataclass(frozen=True)
class RouteDoc:
    method: str
    path: str  # as aiohttp routes it: /api/tasks/{task_id}, maybe {name:regex}
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)  # name → description
    public: bool = False  # no API key needed
    content_types: dict[int, str] = field(default_factory=dict)  # non-JSON answers


ROUTES: list[RouteDoc] = []  # in the order the route modules declare them


# --- The OpenAPI document -----------------------------------------------------------

OPENAPI_VERSION = "3.1.0"
UNAUTHORIZED = 401
BAD_REQUEST = 400

# Every form of the key that auth.py accepts from a client that reads the document.
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer K"},
    "keyHeader": {"type": "apiKey", "in": "header", "name": "key"},
}
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
# Schemas of answers that are not JSON, by media type.
_RAW_SCHEMAS: dict[str, JsonSchemaValue] = {
    "application/json": {},  # any JSON value the route did not name a model for
    "text/event-stream": {"type": "string"},
    "text/html": {"type": "string"},
    "text/plain": {"type": "string"},
    "text/csv": {"type": "string"},
}
_BINARY: JsonSchemaValue = {"type": "string", "format": "binary"}


def openapi_path(path: str) -> str:
    """An aiohttp path as OpenAPI writes it: ``{name:regex}`` becomes ``{name}``."""
    return _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def path_parameters(path: str) -> list[str]:
    return _PATH_PARAM.findall(path)


def _describe(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _operation_id(route: RouteDoc) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", openapi_path(route.path)).strip("_")
    return f"{route.method}_{words}"


class _Schemas:
    """Every model the routes name, rendered once into ``components.schemas``."""

    def __init__(self, routes: list[RouteDoc]) -> None:
        wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
        for route in routes:
            if route.body is not None:
                wanted.append((route.body, "validation"))
            wanted.extend((model, "serialization") for model in route.responses.values() if model)
        unique = list(dict.fromkeys(wanted))
        self.refs, top = models_json_schema(unique, ref_template=_REF_TEMPLATE)
        self.components: dict[str, JsonSchemaValue] = dict(top.get("$defs", {}))

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> JsonSchemaValue:
        return dict(self.refs[(model, mode)])


_REF_TEMPLATE = "#/components/schemas/{model}"


def _response(
    route: RouteDoc, status: int, model: type[BaseModel] | None, schemas: _Schemas
) -> JsonObject:
    if model is None and status >= 400:
        model = ErrorBody
    media_type = route.content_types.get(status)
    answer: JsonObject = {"description": _describe(status)}
    if model is not None:
        answer["content"] = {
            media_type or "application/json": {"schema": schemas.ref(model, "serialization")}
        }
    elif media_type is not None:
        answer["content"] = {media_type: {"schema": _RAW_SCHEMAS.get(media_type, _BINARY)}}
    return answer


def _operation(route: RouteDoc, schemas: _Schemas) -> JsonObject:
    operation: JsonObject = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
    }
    parameters: list[JsonObject] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_parameters(route.path)
    ]
    parameters.extend(
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in route.query.items()
    )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(route.body, "validation")}},
        }
    declared: dict[int, type[BaseModel] | None] = dict(route.responses)
    for status in route.content_types:
        declared.setdefault(status, None)
    if not declared:
        declared[200] = None
    if not route.public:
        declared.setdefault(UNAUTHORIZED, ErrorBody)
    if route.query or "{" in route.path:
        # Text with a NUL character is refused before any handler (INVALID_REQUEST).
        declared.setdefault(BAD_REQUEST, ErrorBody)
    operation["responses"] = {
        str(status): _response(route, status, model, schemas)
        for status, model in sorted(declared.items())
    }
    operation["security"] = [] if route.public else SECURITY
    return operation


def build_spec(title: str, version: str) -> JsonObject:
    """The OpenAPI 3.1 document of every route recorded in :data:`ROUTES`."""
    routes = list(ROUTES)
    schemas = _Schemas(routes)
    paths: dict[str, JsonObject] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method] = _operation(route, schemas)
    tags = sorted({route.tag for route in routes})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Figranium-compatible browser automation. Every refusal is"
                ' `{"error": CODE, "details": text}`.'
            ),
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": SECURITY,
    }
