"""The GUI's :class:`app.ports.PassphraseHandler`: a passphrase dialog on the GUI thread.

Device code asks from the card thread (the key provider is built on first use there); the
question travels to the GUI thread by a queued signal and the card thread waits for the answer,
so the window stays responsive and nothing ever prompts on the terminal the GUI was started
from."""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtCore import QThread
from PySide6.QtCore import Signal
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QApplication
from PySide6.QtWidgets import QInputDialog
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QWidget

from app.i18n import _

Ask = Callable[[str], "str | None"]


def ask_in_dialog(prompt: str) -> str | None:
    """A modal password dialog; ``None`` when the person cancels."""
    parent: QWidget | None = QApplication.activeWindow()
    text, ok = QInputDialog.getText(
        parent,
        _("Card keys"),
        _("{prompt} (the card keys are locked):", prompt=prompt),
        QLineEdit.EchoMode.Password,
    )
    return text if ok and text else None


class QtPassphraseHandler(QObject):
    """Build it on the GUI thread. ``ask``: what puts the question (a dialog by default)."""

    _asked = Signal(str, object)  # prompt, the waiting caller's reply function

    def __init__(self, ask: Ask = ask_in_dialog) -> None:
        super().__init__()
        self._ask = ask
        self._asked.connect(self._on_asked)

    def passphrase(self, prompt: str) -> str | None:
        if QThread.currentThread() is self.thread():
            return self._ask(prompt)
        answered = threading.Event()
        answer: list[str | None] = [None]

        def reply(value: str | None) -> None:
            answer[0] = value
            answered.set()

        self._asked.emit(prompt, reply)
        answered.wait()
        return answer[0]

    @Slot(str, object)
    def _on_asked(self, prompt: str, reply: Callable[[str | None], None]) -> None:
        value: str | None = None
        try:
            value = self._ask(prompt)
        finally:
            reply(value)
