"""The OpenAPI document as the API's whole contract: every status, its body, and links.

A client generated from `/openapi.json` must be able to trust it, so every answer the
API can give is documented where it can happen:

- routes declare what depends on them: `problem_responses(404, 409, 503)` for their
  domain errors, `job_links()` on responses that carry a `job_id`;
- `install_contract` adds what holds for the whole app: 413 on every operation with a
  body (`BodyLimitMiddleware`), and the 422 FastAPI documents wherever it validates,
  rewritten from its `HTTPValidationError` to the problem document actually sent.

Every error is a `Problem` under `application/problem+json`, built by `problems.problem`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from pocketqueue.api.auth import SECURITY_SCHEMES, app_routes, required_role
from pocketqueue.api.problems import PROBLEM_JSON
from pocketqueue.keyring import Role

Responses = dict[int | str, dict[str, Any]]

COMPONENT = "#/components/schemas/{model}"
PROBLEM_REF = COMPONENT.format(model="Problem")

# What each status means when a route has nothing more precise to say.
DEFAULT_DESCRIPTIONS = {
    404: "Not found",
    409: "Conflict with the job's current state",
    413: "The body is larger than API_MAX_BODY_BYTES; refused before it was read",
    422: "The request does not match the schema (`errors` says where), or its content is refused (`detail` says why)",
    401: "No API key, or one this API does not know; `WWW-Authenticate` names the scheme",
    403: "The key's role may not do this; `required_role` names the role needed",
    429: "Over the key's limit; nothing was done. `Retry-After` says when to try again",
    503: "Redis did not answer; nothing was changed, retry shortly",
}


class ValidationIssue(BaseModel):
    """One way the request does not match the schema."""

    loc: list[str | int] = Field(description="Where: `body`, `query`, `path` or `header`, then the field's path")
    msg: str = Field(description="What is wrong, for a person")
    type: str = Field(description="What is wrong, for a program: e.g. `missing`, `json_invalid`, `body_undecodable`")


class Problem(BaseModel):
    """An RFC 9457 problem document: every error the API answers is one."""

    # Extension members carry what a client needs to act, e.g. the `job_id` a 409 is about.
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:pocketqueue:problem:<slug>`: stable, the member to branch on")
    title: str = Field(description="A short summary of the problem type")
    status: int = Field(description="The HTTP status, repeated")
    detail: str = Field(description="What went wrong with this request, and what to do about it")
    instance: str = Field(description="The path of the request")
    errors: list[ValidationIssue] = Field(
        default_factory=list, description="On a 422 for a schema mismatch: each field that does not match"
    )


def problem_content(extends: str | None = None) -> dict[str, Any]:
    """A problem body, or (`extends`, a component's name) a problem carrying that component's members too."""
    schema: dict[str, Any] = {"$ref": PROBLEM_REF}
    if extends:
        schema = {"allOf": [schema, {"$ref": COMPONENT.format(model=extends)}]}
    return {PROBLEM_JSON: {"schema": schema}}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """One error response: a problem document, described by `description` or the status's default text."""
    return {"description": description or DEFAULT_DESCRIPTIONS[status], "content": problem_content()}


def problem_responses(*statuses: int, descriptions: Mapping[int, str] | None = None) -> Responses:
    """Error responses for `statuses`, each a problem document; `descriptions` overrides the default text."""
    given = descriptions or {}
    return {status: problem_response(status, given.get(status)) for status in statuses}


def job_links() -> dict[str, Any]:
    """Where a response carrying a job can lead: the operations that take its `job_id`."""
    follow = {
        "read_job": "The job as it stands now",
        "wait_job": "The job once it has finished",
        "cancel_job": "Cancel the job",
        "retry_job": "Re-drive the job if it failed",
    }
    return {
        operation: {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}, "description": text}
        for operation, text in follow.items()
    }


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path_item in document.get("paths", {}).values():
        yield from path_item.values()


def add_contract(document: dict[str, Any]) -> dict[str, Any]:
    """Add the app-wide answers to FastAPI's document (in place): 413 where a body is taken, 422 as a problem."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template=COMPONENT)
    schemas.update(problem_schema.pop("$defs"), Problem=problem_schema)
    for operation in _operations(document):
        responses = operation["responses"]
        if "422" in responses:
            responses["422"] = problem_response(422)
        if "requestBody" in operation:
            responses["413"] = problem_response(413)
        for response in responses.values():
            # An event stream is described item by item (`itemSchema`); the plain-string
            # `schema` FastAPI adds for any streaming response class would say the whole
            # body is one string, which no client reads it as.
            stream = response.get("content", {}).get("text/event-stream", {})
            if "itemSchema" in stream:
                stream.pop("schema", None)
    # Nothing sends FastAPI's own validation body, so nothing may promise it.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def add_access(document: dict[str, Any], roles: Mapping[str, Role], secured: bool) -> None:
    """Say which role each operation needs, and the 401/403 it may answer (in place).

    Without keys the API is open: nothing is declared, so the document does not promise a
    401 that never comes.
    """
    if not secured:
        return
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for operation in _operations(document):
        role = roles.get(operation["operationId"])
        if role is None:
            continue
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]  # either one
        operation["x-required-role"] = role.label
        operation["description"] = (
            f"{operation.get('description', '')}\n\nNeeds an API key with the `{role.label}` role."
        )
        responses = operation["responses"]
        responses["401"] = problem_response(401)
        if role > Role.READ:
            responses["403"] = problem_response(403)


def install_contract(app: FastAPI, secured: bool = False) -> None:
    """Serve FastAPI's document with the contract added (built once: the routes are fixed by then)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = add_contract(FastAPI.openapi(app))
            roles = {route.name: role for _, route in app_routes(app) if (role := required_role(route))}
            add_access(document, roles, secured)
            app.openapi_schema = document
        return app.openapi_schema

    # Replacing `app.openapi` is FastAPI's documented way to extend the document.
    app.openapi = openapi  # type: ignore[method-assign]
