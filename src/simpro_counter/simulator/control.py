"""Unauthenticated /__ endpoints: ground truth, statistics, data changes and faults.

They sit outside the Simpro paths so they never count as API traffic, never hit
the rate limit and never fail by injection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .dataset import INVOICE_STAGES, Dataset
from .limits import FaultInjector, check_kinds
from .stats import RequestStats

Handler = Callable[[Request], Awaitable[Response]]


class ControlInputError(ValueError):
    """A control request we answer with 422 and this message."""


async def _body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ControlInputError(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlInputError("expected a JSON object")
    return data


def _customer(value: object) -> int | None:
    # Lenient like Simpro itself: 52 and "52" name the same customer.
    if isinstance(value, bool) or not isinstance(value, int | str | None):
        raise ControlInputError("customerId must be an integer or null")
    if isinstance(value, str):
        if not value.isdigit():
            raise ControlInputError("customerId must be an integer or null")
        return int(value)
    return value


def _amount(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ControlInputError("totalExTax must be a decimal string or number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ControlInputError("totalExTax must be a decimal string or number") from exc
    if not amount.is_finite():
        raise ControlInputError("totalExTax must be finite")
    return amount


def _stage(value: object) -> str | None:
    if value is None:
        return None
    if value not in INVOICE_STAGES:
        raise ControlInputError(f"stage must be one of {list(INVOICE_STAGES)}")
    return str(value)


def _invoice_id(request: Request) -> int:
    raw = str(request.path_params["invoice_id"])
    if not raw.isdigit():
        raise KeyError(f"invoice {raw} not found")
    return int(raw)


def control_routes(dataset: Dataset, faults: FaultInjector, stats: RequestStats) -> list[Route]:
    async def truth(request: Request) -> Response:
        return JSONResponse(dataset.truth().as_json())

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats.as_json())

    async def reset_stats(request: Request) -> Response:
        stats.reset()
        return JSONResponse(stats.as_json())

    async def add_invoice(request: Request) -> Response:
        body = await _body(request)
        # Absent customerId = a random existing customer; explicit null = no customer.
        new_id = dataset.add_invoice(
            _customer(body.get("customerId")),
            _amount(body.get("totalExTax")),
            without_customer="customerId" in body and body["customerId"] is None,
        )
        return JSONResponse({"ID": new_id}, status_code=201)

    async def update_invoice(request: Request) -> Response:
        body = await _body(request)
        customer: int | Literal["keep"] | None = "keep"
        if "customerId" in body:
            customer = _customer(body["customerId"])
        invoice_id = _invoice_id(request)
        dataset.update_invoice(
            invoice_id,
            customer_id=customer,
            total_ex_tax=_amount(body.get("totalExTax")),
            stage=_stage(body.get("stage")),
        )
        return JSONResponse({"ID": invoice_id})

    async def add_job(request: Request) -> Response:
        body = await _body(request)
        new_id = dataset.add_work("jobs", _customer(body.get("customerId")))
        return JSONResponse({"ID": new_id}, status_code=201)

    async def add_quote(request: Request) -> Response:
        body = await _body(request)
        new_id = dataset.add_work("quotes", _customer(body.get("customerId")))
        return JSONResponse({"ID": new_id}, status_code=201)

    async def delete_invoice(request: Request) -> Response:
        dataset.delete_invoice(_invoice_id(request))
        return Response(status_code=204)

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults.as_json())

    async def put_faults(request: Request) -> Response:
        body = await _body(request)
        rate = body.get("rate", faults.rate)
        kinds = body.get("kinds", list(faults.kinds))
        schedule = body.get("schedule", list(faults.schedule))
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ControlInputError("rate must be a number within [0, 1]")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise ControlInputError("kinds must be a list of strings")
        if not isinstance(schedule, list) or not all(
            k is None or isinstance(k, str) for k in schedule
        ):
            raise ControlInputError("schedule must be a list of strings or nulls")
        try:
            check_kinds(kinds)
            check_kinds(schedule)
        except ValueError as exc:
            raise ControlInputError(str(exc)) from exc
        faults.rate = float(rate)
        faults.kinds = tuple(kinds)
        faults.schedule.clear()
        faults.schedule.extend(schedule)
        return JSONResponse(faults.as_json())

    return [
        Route("/__truth", truth, methods=["GET"]),
        Route("/__stats", get_stats, methods=["GET"]),
        Route("/__stats/reset", reset_stats, methods=["POST"]),
        Route("/__invoices", _guarded(add_invoice), methods=["POST"]),
        Route("/__invoices/{invoice_id}", _guarded(update_invoice), methods=["PATCH"]),
        Route("/__invoices/{invoice_id}", _guarded(delete_invoice), methods=["DELETE"]),
        Route("/__jobs", _guarded(add_job), methods=["POST"]),
        Route("/__quotes", _guarded(add_quote), methods=["POST"]),
        Route("/__faults", get_faults, methods=["GET"]),
        Route("/__faults", _guarded(put_faults), methods=["PUT"]),
    ]


def _guarded(handler: Handler) -> Handler:
    """Map ControlInputError to 422 and a missing record (KeyError) to 404."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ControlInputError as exc:
            return _error(422, str(exc))
        except KeyError as exc:
            # str(KeyError) is the repr of its argument; unwrap it for a clean message.
            return _error(404, str(exc.args[0]) if exc.args else "not found")

    return guarded


def _error(status: int, message: str) -> Response:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status)
