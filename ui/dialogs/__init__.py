"""Dialogs of the card operations that are not a plain sale, and the approval they may need.

Start them from any page with the ``start_*`` functions; each opens its dialog window-modal
(``open()``, never a nested event loop) and returns it::

    start_open_account(shell, customer_no)      # a blank card becomes the customer's card
    start_rewrite(shell, customer_no)           # the last purchase written again
    start_replacement(shell, customer_no)       # a blank card replaces a lost one (approval)
    start_reversal(shell, sale_id=..., customer_no=...)  # take a sale back (approval)

Every dialog says what it will do, starts on Enter, shows a progress state while the card is
worked on (on the card thread, ``shell.ops.card``, with ``shell.terminal()``), then the outcome or
the error (through :func:`ui.bridge.error_text`); Esc closes it, except while the card is
being written.  ``finished_ok`` is emitted with the outcome when the operation succeeded.

:class:`ApprovalDialog` gets a supervisor's sign-off: a supervisor signs in on the spot (id and
password; :func:`app.services.approvals.approve_on_spot`, as ``cardvend reverse --approver``
does), or the operator files a request in the approval queue (:func:`approvals.request`) that a
supervisor approves from the queue on the Unresolved page; the dialog polls the request and goes
on by itself once it is approved.  A request filed and left (Esc) is remembered for the same
operator, action and target, so opening the operation again picks up its approval.
"""

from __future__ import annotations

from app.presenters.cardwork import approver_of
from ui.dialogs.approval import ApprovalDialog
from ui.dialogs.cardops import OpenAccountDialog
from ui.dialogs.cardops import ReplacementDialog
from ui.dialogs.cardops import ReversalDialog
from ui.dialogs.cardops import RewriteDialog
from ui.dialogs.cardops import last_reversible
from ui.dialogs.cardops import start_open_account
from ui.dialogs.cardops import start_replacement
from ui.dialogs.cardops import start_reversal
from ui.dialogs.cardops import start_rewrite
from ui.dialogs.common import POLL_MS
from ui.dialogs.common import TONES
from ui.dialogs.common import action_text
from ui.dialogs.common import is_approval_problem
from ui.dialogs.common import run_quietly
from ui.dialogs.common import sign_in
from ui.dialogs.common import tone
from ui.dialogs.common import when_text
from ui.dialogs.operation import OperationDialog
from ui.dialogs.operation import print_receipt
from ui.dialogs.signin import SignInDialog
from ui.dialogs.signin import SignInForm

__all__ = [
    "POLL_MS",
    "TONES",
    "ApprovalDialog",
    "OpenAccountDialog",
    "OperationDialog",
    "ReplacementDialog",
    "ReversalDialog",
    "RewriteDialog",
    "SignInDialog",
    "SignInForm",
    "action_text",
    "approver_of",
    "is_approval_problem",
    "last_reversible",
    "print_receipt",
    "run_quietly",
    "sign_in",
    "start_open_account",
    "start_replacement",
    "start_reversal",
    "start_rewrite",
    "tone",
    "when_text",
]
