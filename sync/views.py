"""The station's views the counter's pages read (:class:`app.ports.StationViews`): a customer's
charge control, its meter called now (condition release), the statistics and the exceptions
queue, each a short request of its own over the contract (one attempt: a page shows at once that
the station cannot be reached, and asks again when told)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from app.context import AppContext
from sync import contract as c
from sync.cli_condition import call_condition
from sync.client import CentralClient, RetryPolicy
from sync.service import make_client


class ClientViews:
    """:class:`app.ports.StationViews` over a :class:`CentralClient` that ``make`` builds for
    each request (:func:`for_counter`: this counter's URL and token, read when asked)."""

    def __init__(self, make: Callable[[], CentralClient]) -> None:
        self.make = make

    def _client(self) -> CentralClient:
        client = self.make()
        client.retry = RetryPolicy(attempts=1)
        return client

    def control_status(self, customer_no: str) -> Mapping[str, Any]:
        client = self._client()
        try:
            return client.control_status(customer_no).model_dump(mode="json")
        finally:
            client.close()

    def terminal_condition(self, customer_no: str) -> Mapping[str, Any]:
        client = self._client()
        try:
            return call_condition(client, customer_no).model_dump(mode="json")
        finally:
            client.close()

    def stats(
        self,
        *,
        region: str | None = None,
        date_from: dt.date | None = None,
        date_to: dt.date | None = None,
        plan: str | None = None,
        state: str | None = None,
    ) -> Mapping[str, Any]:
        client = self._client()
        try:
            found = client.stats(
                region=region, date_from=date_from, date_to=date_to, plan=plan, state=state
            )
            return found.model_dump(mode="json")
        finally:
            client.close()

    def exceptions(self, state: str | None = None, limit: int = 100) -> Mapping[str, Any]:
        client = self._client()
        try:
            return client.list_exceptions(state, limit).model_dump(mode="json")
        finally:
            client.close()

    def exception(self, exception_id: str) -> Mapping[str, Any]:
        client = self._client()
        try:
            return client.get_exception(exception_id).model_dump(mode="json")
        finally:
            client.close()

    def act_on_exception(self, exception_id: str, step: Mapping[str, Any]) -> Mapping[str, Any]:
        client = self._client()
        try:
            request = c.ExceptionAction.model_validate(step)
            return client.act_on_exception(exception_id, request).model_dump(mode="json")
        finally:
            client.close()


def for_counter(ctx: AppContext) -> ClientViews:
    """The views with this counter's registration (NotRegistered when it has none)."""
    return ClientViews(lambda: make_client(ctx))
