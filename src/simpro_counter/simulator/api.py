"""The Simpro REST resources under /api/v1.0/: info, companies and company lists."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .config import SimulatorConfig
from .dataset import Dataset
from .listing import list_page
from .query import QueryError, parse_columns, parse_list_query
from .records import (
    COMPANY_CUSTOMER_FIELDS,
    COMPANY_FIELDS,
    CUSTOMER_FIELDS,
    INDIVIDUAL_CUSTOMER_FIELDS,
    INVOICE_FIELDS,
    WORK_FIELDS,
    pick,
)
from .table import Row, Table

SIMPRO_VERSION = "24.1.3.0"


@dataclass(frozen=True)
class View:
    """One list endpoint: which table backs it, its fields, and an optional kind filter."""

    table: str
    fields: frozenset[str]
    kind: str | None = None


# Path segments after companies/{id}/ -> view. A /{id} form is these plus one segment.
VIEWS: dict[tuple[str, ...], View] = {
    ("invoices",): View("invoices", INVOICE_FIELDS),
    ("customers",): View("customers", CUSTOMER_FIELDS),
    ("customers", "companies"): View("customers", COMPANY_CUSTOMER_FIELDS, "company"),
    ("customers", "individuals"): View("customers", INDIVIDUAL_CUSTOMER_FIELDS, "individual"),
    ("jobs",): View("jobs", WORK_FIELDS),
    ("quotes",): View("quotes", WORK_FIELDS),
}
_EMPTY = Table()  # what every company but the first holds


def error(status: int, message: str, **fields: str) -> JSONResponse:
    return JSONResponse({"errors": [{**fields, "message": message}]}, status_code=status)


def _json(payload: object, headers: dict[str, str]) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, media_type="application/json", headers=headers)


def _since(header: str | None) -> int | None:
    """If-Modified-Since in epoch seconds; an unparseable date is ignored, as HTTP says."""
    if not header:
        return None
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if since.tzinfo is None:  # "-0000" means UTC with no offset known, per RFC 5322
        since = since.replace(tzinfo=UTC)
    return int(since.timestamp())


class SimproApi:
    """Dispatches GET /api/v1.0/{rest} by hand so a trailing slash is optional."""

    def __init__(
        self, dataset: Dataset, config: SimulatorConfig, clock: Callable[[], float]
    ) -> None:
        self._dataset = dataset
        self._config = config
        self._clock = clock
        self._companies = Table(
            _company_row(cid, config.company_ids[0]) for cid in config.company_ids
        )

    async def handle(self, request: Request) -> Response:
        segments = tuple(s for s in str(request.path_params["rest"]).split("/") if s)
        try:
            return self._dispatch(request, segments)
        except QueryError as exc:
            return JSONResponse(exc.as_json(), status_code=422)

    def _dispatch(self, request: Request, segments: tuple[str, ...]) -> Response:
        if segments == ("info",):
            return self._info()
        if not segments or segments[0] != "companies":
            return error(404, "Not found")
        if len(segments) == 1:
            return self._list(request, self._companies, COMPANY_FIELDS, None)
        company = _int(segments[1])
        if company not in self._config.company_ids:
            return error(404, f"Company {segments[1]} not found")
        if len(segments) == 2:
            return self._detail(request, self._companies, COMPANY_FIELDS, None, segments[1])
        rest = segments[2:]
        has_data = company == self._config.company_ids[0]
        view = VIEWS.get(rest)
        if view is not None:
            table = self._dataset.tables[view.table] if has_data else _EMPTY
            return self._list(request, table, view.fields, view.kind)
        view = VIEWS.get(rest[:-1])
        if view is not None:
            table = self._dataset.tables[view.table] if has_data else _EMPTY
            return self._detail(request, table, view.fields, view.kind, rest[-1])
        return error(404, "Not found")

    def _info(self) -> Response:
        multi = len(self._config.company_ids) > 1
        return _json(
            {
                "Version": SIMPRO_VERSION,
                "Country": "Australia",
                "MultiCompany": multi,
                "SharedCatalog": False,
                "SharedStock": False,
                "SharedClients": False,
                "SharedSetup": False,
                "SharedDefaults": False,
                "SharedAccountsIntegration": False,
                "SharedVoip": False,
            },
            {"Date": formatdate(self._clock(), usegmt=True)},
        )

    def _list(
        self, request: Request, table: Table, fields: frozenset[str], kind: str | None
    ) -> Response:
        query = parse_list_query(
            request.query_params.multi_items(),
            fields,
            unknown_fields=self._config.unknown_query_fields,
        )
        # A build that ignores If-Modified-Since answers as if it had not been sent.
        ims = (
            None
            if self._config.ignore_if_modified_since
            else request.headers.get("if-modified-since")
        )
        since = _since(ims)
        with self._dataset.lock:
            # If-Modified-Since matches DateModified >= the date sent, not strictly
            # after: HTTP dates have 1 s resolution, so a change made in the same second
            # as the response whose Date the client sends back would otherwise be lost.
            # The cost is seeing a record of that second twice, harmless to an upsert.
            # Date is read under the lock, before the snapshot, so any change this
            # answer misses is stamped at or after it and comes with the next request.
            date = formatdate(self._clock(), usegmt=True)
            page = list_page(
                table,
                query,
                kind=kind,
                modified_since=since,
                ignore_id_filters=self._config.ignore_id_filters,
            )
        if since is not None and page.total == 0 and self._config.not_modified_status == 304:
            return Response(status_code=304, headers={"Date": date})
        headers = {
            "Date": date,
            "Result-Total": str(page.total),
            "Result-Pages": str(page.pages),
            "Result-Count": str(page.count),
        }
        return _json(page.items, headers)

    def _detail(
        self,
        request: Request,
        table: Table,
        fields: frozenset[str],
        kind: str | None,
        raw_id: str,
    ) -> Response:
        columns = parse_columns(request.query_params.get("columns"), fields)
        with self._dataset.lock:
            date = formatdate(self._clock(), usegmt=True)
            row = table.get(_int(raw_id))
        if row is None or (kind is not None and row.kind != kind):
            return error(404, f"Record {raw_id} not found")
        doc = dict(row.detail) if columns is None else pick(row.detail, columns)
        return _json(doc, {"Date": date})


def _int(raw: str) -> int:
    """A path ID as an int; -1 (never a record) when it is not a number."""
    return int(raw) if raw.isdigit() else -1


def _company_row(company_id: int, first: int) -> Row:
    name = "Simulated Services Pty Ltd" if company_id == first else f"Branch {company_id}"
    doc = {"ID": company_id, "Name": name}
    return Row(company_id, 0, doc, doc)
