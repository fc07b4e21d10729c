"""Something that runs in the background until stopped: :meth:`Background.start` and
:meth:`Background.stop`, also as a context manager (``with`` starts it and stops it at the end)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Background:
    """A base for servers and workers that run on their own thread or loop."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
