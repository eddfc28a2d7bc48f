"""The Simpro webhook subscription API of the simulated build, as Starlette routes.

As SIMPRO.md describes Simpro's: companies/{id}/setup/webhooks/ lists (paginated like
every Simpro list; each item only `ID` and `Name` unless `columns` asks for more) and
creates subscriptions (POST, 201 with the record, which adds `ID` and `DateCreated`);
companies/{id}/setup/webhooks/{id} shows one, changes it (PATCH, 204 without a body)
and deletes it (DELETE, 204). Fields: Name*, CallbackURL*, Events*, Secret, Email,
Description, Status. A trailing slash is optional. Invalid input answers 422 with one
error per field, unknown companies and subscriptions 404, other methods 405. The
unauthenticated GET /__webhooks shows every subscription and the delivery log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simpro_counter.webhooks.events import INVOICE_EVENTS, KNOWN_EVENTS

from .config import callback_url_error
from .listing import list_page
from .query import QueryError, UnknownFields, parse_columns, parse_list_query
from .records import pick
from .table import Row, Table
from .webhook_dispatch import WebhookDispatcher
from .webhook_subscription import Subscription, SubscriptionFields

# The events a subscription may ask for: every one the simulated build sends.
OFFERED_EVENTS: tuple[str, ...] = KNOWN_EVENTS
_EVENTS = frozenset(OFFERED_EVENTS)
WEBHOOK_FIELDS = frozenset(
    {
        "ID",
        "Name",
        "CallbackURL",
        "Secret",
        "Email",
        "Events",
        "Status",
        "Description",
        "DateCreated",
    }
)
_READ_ONLY = ("ID", "DateCreated")
_SUMMARY_FIELDS = ("ID", "Name")  # what a list item holds without `columns`
_STATUSES = ("Enabled", "Disabled")
_WEBHOOKS = "/api/v1.0/companies/{company}/setup/webhooks"
_WEBHOOK = _WEBHOOKS + "/{sub_id}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status)


def _errors(items: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"errors": items}, status_code=422)


def _validate(
    body: Mapping[str, object], *, partial: bool
) -> tuple[SubscriptionFields, list[dict[str, str]]]:
    """The subscription fields a POST (or, `partial`, a PATCH) body gives, and its errors."""
    errors: list[dict[str, str]] = []
    texts: dict[str, str] = {}
    events: tuple[str, ...] | None = None
    status: str | None = None

    def bad(path: str, message: str) -> None:
        errors.append({"path": path, "message": message})

    for key in body:
        if key in _READ_ONLY:
            bad(key, f"{key} is read-only")
        elif key not in WEBHOOK_FIELDS:
            bad(key, f"unknown field {key}")
    if not partial:
        for key in ("Name", "CallbackURL", "Events"):
            if key not in body:
                bad(key, f"{key} is required")
    for key in ("Name", "Secret", "Description", "Email"):
        if key in body:
            value = body[key]
            if not isinstance(value, str) or (key == "Name" and not value.strip()):
                bad(key, f"{key} must be a{' non-empty' if key == 'Name' else ''} string")
            elif key == "Email" and value and "@" not in value:
                bad(key, "Email must be an email address")
            else:
                texts[key] = value
    if "CallbackURL" in body:
        url = body["CallbackURL"]
        problem = "must be a string" if not isinstance(url, str) else callback_url_error(url)
        if problem:
            bad("CallbackURL", f"CallbackURL {problem}")
        elif isinstance(url, str):
            texts["CallbackURL"] = url
    if "Events" in body:
        given = body["Events"]
        if not isinstance(given, list) or not given:
            bad("Events", "Events must be a non-empty list of event names")
        else:
            unknown = [e for e in given if not isinstance(e, str) or e not in _EVENTS]
            if unknown:
                bad("Events", f"unknown events {unknown}; known: {list(OFFERED_EVENTS)}")
            else:
                events = tuple(dict.fromkeys(str(e) for e in given))
    if "Status" in body:
        if body["Status"] not in _STATUSES:
            bad("Status", "Status must be Enabled or Disabled")
        else:
            status = str(body["Status"])
    fields = SubscriptionFields(
        name=texts.get("Name"),
        callback_url=texts.get("CallbackURL"),
        secret=texts.get("Secret"),
        events=events,
        status=status,
        description=texts.get("Description"),
        email=texts.get("Email"),
    )
    return fields, errors


class WebhookApi:
    """The endpoints of companies/{id}/setup/webhooks/[{id}] over one dispatcher."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        company_ids: tuple[int, ...],
        unknown_fields: UnknownFields = "ignore",
    ) -> None:
        self._dispatcher = dispatcher
        self._company_ids = company_ids
        self._unknown_fields = unknown_fields

    def routes(self) -> list[BaseRoute]:
        """The subscription routes, each with and without its trailing slash."""
        collection = ["GET", "POST"]
        item = ["GET", "PATCH", "DELETE"]
        return [
            Route(_WEBHOOKS, self.collection, methods=collection),
            Route(_WEBHOOKS + "/", self.collection, methods=collection),
            Route(_WEBHOOK, self.item, methods=item),
            Route(_WEBHOOK + "/", self.item, methods=item),
        ]

    async def collection(self, request: Request) -> Response:
        company = self._company(request)
        if company is None:
            return _company_not_found(request)
        if request.method == "POST":
            return await self._create(request, company)
        return _query_errors_as_422(lambda: self._list(request, company))

    async def item(self, request: Request) -> Response:
        company = self._company(request)
        if company is None:
            return _company_not_found(request)
        raw_id = str(request.path_params["sub_id"])
        sub_id = int(raw_id) if raw_id.isdigit() else -1
        if request.method == "PATCH":
            return await self._update(request, company, sub_id)
        if request.method == "DELETE":
            if not self._dispatcher.unsubscribe(company, sub_id):
                return _error(404, f"Webhook {raw_id} not found")
            return Response(status_code=204)
        return _query_errors_as_422(lambda: self._detail(request, company, sub_id))

    def _company(self, request: Request) -> int | None:
        raw = str(request.path_params["company"])
        company = int(raw) if raw.isdigit() else -1
        return company if company in self._company_ids else None

    def _list(self, request: Request, company: int) -> Response:
        query = parse_list_query(
            request.query_params.multi_items(),
            WEBHOOK_FIELDS,
            unknown_fields=self._unknown_fields,
        )
        table = Table(_row(s) for s in self._dispatcher.subscriptions(company))
        page = list_page(table, query)
        headers = {
            "Result-Total": str(page.total),
            "Result-Pages": str(page.pages),
            "Result-Count": str(page.count),
        }
        return JSONResponse(page.items, headers=headers)

    def _detail(self, request: Request, company: int, sub_id: int) -> Response:
        columns = parse_columns(request.query_params.get("columns"), WEBHOOK_FIELDS)
        sub = self._dispatcher.subscription(company, sub_id)
        if sub is None:
            return _error(404, f"Webhook {sub_id} not found")
        doc = sub.as_json()
        return JSONResponse(doc if columns is None else pick(doc, columns))

    async def _create(self, request: Request, company: int) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        fields, errors = _validate(body, partial=False)
        name, callback_url = fields.name, fields.callback_url
        if errors or name is None or callback_url is None:  # both required: errors say so
            return _errors(errors)
        sub = self._dispatcher.subscribe(
            company,
            name=name,
            callback_url=callback_url,
            secret=fields.secret or "",
            events=fields.events or INVOICE_EVENTS,
            status=fields.status or "Enabled",
            description=fields.description or "",
            email=fields.email or "",
        )
        return JSONResponse(sub.as_json(), status_code=201)

    async def _update(self, request: Request, company: int, sub_id: int) -> Response:
        if self._dispatcher.subscription(company, sub_id) is None:
            return _error(404, f"Webhook {sub_id} not found")
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        fields, errors = _validate(body, partial=True)
        if errors:
            return _errors(errors)
        if self._dispatcher.update(company, sub_id, fields) is None:  # deleted meanwhile
            return _error(404, f"Webhook {sub_id} not found")
        # Simpro answers a PATCH with 204 and no body: a client re-reads what it needs.
        return Response(status_code=204)


def _company_not_found(request: Request) -> Response:
    return _error(404, f"Company {request.path_params['company']} not found")


def _query_errors_as_422(answer: Callable[[], Response]) -> Response:
    """`answer()`, or 422 with the query's errors (a bad pageSize, columns, filter)."""
    try:
        return answer()
    except QueryError as exc:
        return JSONResponse(exc.as_json(), status_code=422)


async def _json_body(request: Request) -> dict[str, object] | Response:
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _errors([{"path": "", "message": f"invalid JSON: {exc}"}])
    if not isinstance(data, dict):
        return _errors([{"path": "", "message": "expected a JSON object"}])
    return data


def _row(sub: Subscription) -> Row:
    doc = sub.as_json()
    return Row(sub.id, 0, pick(doc, _SUMMARY_FIELDS), doc)


def webhook_routes(
    dispatcher: WebhookDispatcher,
    company_ids: tuple[int, ...],
    unknown_fields: UnknownFields = "ignore",
) -> list[BaseRoute]:
    """The subscription API (must precede the generic /api/v1.0/ GET route) and the
    unauthenticated GET /__webhooks view of subscriptions and deliveries."""

    async def show(request: Request) -> Response:
        return JSONResponse(dispatcher.as_json())

    return [
        *WebhookApi(dispatcher, company_ids, unknown_fields).routes(),
        Route("/__webhooks", show, methods=["GET"]),
    ]
