"""The OpenAPI document, completed: the bearer scheme and the error answers of every operation,
whoever wrote the route."""

from __future__ import annotations

import json
from typing import Any

from rollwise.server._errors import Error

#: Paths whose every operation needs a bearer token.
_AUTHENTICATED = ("/api/v1/", "/sdk/v1/", "/ofrep/v1/", "/judge/v1/")
#: OFREP answers its own error bodies (open-feature/protocol): 400, 404 and 429, never 422.
_OFREP = "/ofrep/v1/"
_MANAGEMENT = "/api/v1/"
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_CHANGES = {"post", "put", "delete", "patch"}
_WITH_BODY = {"post", "put", "patch"}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_WHY = {
    "401": "no token, or an unknown or revoked one",
    "403": "the token's role may not do this",
    "404": "no such flag, plan, rollout or token",
    "409": "it contradicts what is stored or running, or it changed meanwhile",
    "413": "the request body is over its limit",
    "422": "the request is not valid: the message names the first bad field",
}


def document_errors(spec: dict[str, Any]) -> None:
    """Declare in an OpenAPI document what the server does for every operation, whoever wrote
    the route: the bearer scheme on the management and SDK APIs, and the error answers each
    operation can give, all with the one ``Error`` body. Edits ``spec`` in place."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a rollwise token: admin, operator or viewer for /api/v1, sdk for /sdk/v1 "
        "and /ofrep/v1 (which also takes it as X-API-Key)",
    }
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            _hoist_definitions(operation, schemas)
            authenticated = path.startswith(_AUTHENTICATED)
            statuses = []
            if authenticated:
                operation["security"] = [{"bearer": []}]
                statuses += ["401", "403"]
            ofrep = path.startswith(_OFREP)
            if "{" in path and not ofrep:
                statuses.append("404")
            if method in _CHANGES and path.startswith(_MANAGEMENT):
                statuses.append("409")
            if authenticated and (method in _WITH_BODY or "requestBody" in operation):
                statuses.append("413")
            if not ofrep and (
                authenticated or operation.get("parameters") or "requestBody" in operation
            ):
                statuses.append("422")
            responses = operation.setdefault("responses", {})
            if ofrep:  # its path parameter takes any text: FastAPI's 422 cannot happen
                responses.pop("422", None)
            for status in statuses:
                declared = responses.setdefault(status, {})
                declared.setdefault("description", _WHY[status])
                if status == "422" or "content" not in declared:
                    declared["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
    text = json.dumps(spec.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schemas.pop(unused, None)


def _hoist_definitions(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A body schema declared by hand (``openapi_extra``) may carry ``$defs`` that refer to
    ``#/components/schemas/…``: they move there."""
    content = operation.get("requestBody", {}).get("content", {})
    for media in content.values():
        schema = media.get("schema")
        if isinstance(schema, dict) and "$defs" in schema:
            for name, definition in schema.pop("$defs").items():
                schemas.setdefault(name, definition)
