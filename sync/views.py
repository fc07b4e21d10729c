"""The station's views the counter's pages read (:class:`app.ports.StationViews`): a customer's
charge control, its meter called now (condition release), the statistics and the exceptions
queue, each a short request of its own over the contract (one attempt: a page shows at once that
the station cannot be reached, and asks again when told)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import Unpack

from app.context import AppContext
from app.ports import StatsFilter
from sync import contract as c
from sync.cli_condition import call_condition
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.service import make_client


class ClientViews:
    """:class:`app.ports.StationViews` over a :class:`CentralClient` that ``make`` builds for
    each request (:func:`for_counter`: this counter's URL and token, read when asked)."""

    def __init__(self, make: Callable[[], CentralClient]) -> None:
        self.make = make

    def _ask(self, request: Callable[[CentralClient], c.Model]) -> Mapping[str, Any]:
        """One request on a client of its own (one attempt), its answer as JSON values."""
        client = self.make()
        client.retry = RetryPolicy(attempts=1)
        try:
            return request(client).model_dump(mode="json")
        finally:
            client.close()

    def control_status(self, customer_no: str) -> Mapping[str, Any]:
        return self._ask(lambda client: client.control_status(customer_no))

    def terminal_condition(self, customer_no: str) -> Mapping[str, Any]:
        return self._ask(lambda client: call_condition(client, customer_no))

    def stats(self, **filters: Unpack[StatsFilter]) -> Mapping[str, Any]:
        return self._ask(lambda client: client.stats(**filters))

    def exceptions(self, state: str | None = None, limit: int = 100) -> Mapping[str, Any]:
        return self._ask(lambda client: client.list_exceptions(state, limit))

    def exception(self, exception_id: str) -> Mapping[str, Any]:
        return self._ask(lambda client: client.get_exception(exception_id))

    def act_on_exception(self, exception_id: str, step: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._ask(
            lambda client: client.act_on_exception(
                exception_id, c.ExceptionAction.model_validate(step)
            )
        )


def for_counter(ctx: AppContext) -> ClientViews:
    """The views with this counter's registration (NotRegistered when it has none)."""
    return ClientViews(lambda: make_client(ctx))
