"""A monday.com account, simulated: the GraphQL API (``POST /v2``) over monday's own SDL.

One account (Fjordlys Industri AS) with a "Finance operations" workspace whose boards its users
configured themselves (see :mod:`.demo`), a demo user and their personal API token. Never more
forgiving than monday.com (``API_NOTES.md``, ``specs/monday-2026-10.graphql``):

- **Auth** ``Authorization: <personal token>``, raw; ``Bearer <token>``, a wrong or a missing token:
  401. OAuth at ``/oauth2/authorize`` and ``/oauth2/token`` (:mod:`.oauth`): the access token never
  expires and there is no refresh token; it is sent raw like a personal token. **Versions** ``API-Version: 2026-10`` or ``2026-01`` (each validated against its own SDL);
  omitted: the current one (2026-10); anything else: 400.
- **GraphQL** documents are parsed and validated against the SDL of the version asked for: an
  unknown field or argument answers HTTP 200 with ``errors[]`` in monday's words
  (``Field 'x' doesn't exist on type 'Item'``, code ``undefinedField``) and no ``data``.
  Application errors answer 200 with ``errors[]`` whose ``path`` names the failing field or alias,
  next to the ``data`` of the others (``ColumnValueException``, ``InvalidBoardIdException``,
  ``InvalidItemIdException``, ``InvalidColumnIdException``, ``ItemsLimitationException`` at 10,000
  items per board, ``RESOURCE_LOCKED``).
- **Limits** per query 5,000,000 complexity points (``maxComplexityExceeded``); per minute
  10,000,000 per personal token, refused whole with ``COMPLEXITY_BUDGET_EXHAUSTED`` and
  ``extensions.retry_in_seconds`` (HTTP 200); an item write costs 10,000. More than 5,000
  requests a minute, or more than ``max_concurrency`` at once: 429 (``RATE_LIMIT_EXCEEDED`` /
  ``maxConcurrencyExceeded``) with ``Retry-After``. One mutation at a time per board.
- **Pages** ``items_page`` / ``next_items_page`` / ``items_page_by_column_values``: ``limit`` 1..500,
  an opaque cursor valid 60 minutes from the first page (``CursorExpiredError`` after).
- **Webhooks** ``create_webhook`` POSTs ``{"challenge"}`` to the URL, which must echo it; events
  ``{"event": {...}}`` carry a JWT (HS256, the app's signing secret) in ``Authorization`` and are
  retried every minute for 30 minutes (times ``time_scale``). Writes through the API and the
  helpers (:meth:`MondaySimulator.mark_received`, :meth:`~MondaySimulator.set_column_value`) fire them.
"""

from .demo import (
    ACCOUNT_ID,
    AR_BOARD,
    DEMO_USER_ID,
    DIMENSIONS_BOARD,
    GL_BOARD,
    INVOICE_BOARD,
    PO_BOARD,
    WORKSPACE_ID,
    demo_api_token,
)
from .oauth import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI
from .simulator import DEMO_SIGNING_SECRET, MondaySimulator, sandbox_credentials

__all__ = [
    "ACCOUNT_ID",
    "AR_BOARD",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_REDIRECT_URI",
    "DEMO_SIGNING_SECRET",
    "DEMO_USER_ID",
    "DIMENSIONS_BOARD",
    "GL_BOARD",
    "INVOICE_BOARD",
    "PO_BOARD",
    "WORKSPACE_ID",
    "MondaySimulator",
    "demo_api_token",
    "sandbox_credentials",
]
