"""PC/SC card readers through pyscard: the real :class:`app.ports.CardReaderPort`.

Threads
    * :class:`CardThread` (thread name ``card``): every PC/SC call that touches a card runs on this
      one worker.  :meth:`PcscChannel.transmit` and the other calls submit their work to it and
      wait; a call made on the card thread itself runs inline, so a whole card session may be
      submitted as one function.  The composition root (main.py) builds the one card thread and
      hands it to the ports and to the GUI (``ctx.card_worker``, an :class:`app.ports.CardWorker`),
      so the GUI's card operations and their APDUs run on the same thread; a port built without
      one shares :func:`default_card_thread`.  The thread starts on first use (and again in a
      forked child, where a thread started before ``fork`` does not exist).
    * the monitor thread (``pcsc-monitor``) waits in ``SCardGetStatusChange`` and calls the
      :meth:`PcscReaderPort.subscribe` callbacks.  **Callbacks run on that thread**: they must only
      hand the event on (a queue, a Qt signal) and return quickly; never touch the UI or a card
      there.

    The monitor is ours, not pyscard's ``CardMonitor``/``ReaderMonitor``: measured with pyscard
    2.3.1, both of their threads end for good at the first ``SCARD_E_NO_SERVICE`` when pcscd
    stops (so no event ever arrives again), and constructing a second ``ReaderMonitor()`` anywhere
    in the process drops every observer already registered.  Ours re-establishes its context
    after pcscd restarts and reports the readers as removed while pcscd is away.

Errors
    PC/SC failures become the typed card errors of :mod:`app.domain.card`: ``NoReader`` (pcscd not
    running, no or unknown reader), ``NoCard`` (nothing in the reader at connect), ``CardRemoved``
    (card taken out or reset by another program during a session), ``CardCommandError`` (the card
    gave no usable answer).  Status words are *not* errors here: ``transmit`` returns them as an int
    (``SW1 << 8 | SW2``) and the profile layer decides what they mean.

Recovery
    The port keeps one PC/SC context for :meth:`~PcscReaderPort.readers` and card waits; when pcscd
    has restarted, the next call finds the context dead and establishes a new one.  Every channel
    has a context of its own, so a new :meth:`~PcscReaderPort.connect` works once pcscd is back.

Tracing
    Each APDU exchange is logged at DEBUG on the card thread: header and length always; the data of
    EXTERNAL AUTHENTICATE (INS 82), the MAC (last 4 data bytes) of secure-messaging commands
    (CLA 04), the last 4 bytes of challenges (answers to GET CHALLENGE, INS 84, and to secure
    commands) and the PSAM's cryptograms and MACs (CLA 80 INS FA, cardio/PROFILE.md) are shown as
    ``**``.
"""

from __future__ import annotations

from cardio.pcsc.channel import PcscChannel
from cardio.pcsc.codes import hresult_text
from cardio.pcsc.monitor import EventCallback
from cardio.pcsc.reader import PcscReaderPort
from cardio.pcsc.thread import CardThread
from cardio.pcsc.thread import default_card_thread
from cardio.pcsc.trace import command_name
from cardio.pcsc.trace import trace_command
from cardio.pcsc.trace import trace_response

__all__ = [
    "CardThread",
    "EventCallback",
    "PcscChannel",
    "PcscReaderPort",
    "command_name",
    "default_card_thread",
    "hresult_text",
    "trace_command",
    "trace_response",
]
