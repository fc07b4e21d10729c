"""``GET /stats``: the charge-control statistics of a region, for a counter (its office, its
city or its province; :func:`sync.central.stats.counter_region`).  A router of its own, included
by :func:`sync.central.api.create_app`, on the same route class (the token is checked first)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi import Response

from sync import contract as c
from sync.central import stats
from sync.central.api import API
from sync.central.api import ContractRoute
from sync.central.api import CounterDep
from sync.central.api import StoreDep
from sync.central.wire import HttpError
from sync.central.wire import json_response
from sync.central.wire import problems

router = APIRouter(prefix=API, route_class=ContractRoute)
# a day as the document gives it (format date): YYYY-MM-DD, not a number of seconds
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@router.get(
    "/stats",
    operation_id="getStats",
    summary=(
        "Charge-control statistics of this counter's office, or of the city or province it is "
        "in (region: an office code, city:NAME, province:NAME); period from/to in office days"
    ),
    response_model=c.Stats,
    responses=problems(400, 401, 403, 404, 422),
)
def get_stats(
    request: Request,
    counter: CounterDep,
    store: StoreDep,
    region: Annotated[str | None, Query(max_length=80)] = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    plan: Annotated[str | None, Query(max_length=32)] = None,
    state: Annotated[c.StatsState | None, Query()] = None,
) -> Response:
    for name in ("from", "to"):
        given = request.query_params.get(name)
        if given is not None and not DAY.fullmatch(given):
            raise HttpError(400, "bad_request", f"{name}: a day is written YYYY-MM-DD")
    try:
        found = stats.for_region(
            store, region, date_from, date_to, plan, state, office_code=counter.office_code
        )
    except stats.StatsError as err:
        raise HttpError(err.status, err.code, str(err)) from err
    return json_response(200, c.Stats.model_validate(found))
