"""An Asana organisation, simulated: REST API 1.0 under ``/api/1.0``, PAT and OAuth, batch, webhooks.

One workspace (an organisation, "Fjordlys Industri AS") with the team "Finance & Procurement", six
users with e-mail addresses, the projects "Purchase orders" and "Supplier invoices", a "PO project
template", and workspace custom fields: Vendor, PO number, Invoice number, Visma ID (text), Amount
(number, precision 2), Due date (date), Currency, GL account, Cost center, Review flag and Visma
status (enum). It is never more forgiving than Asana (``specs/asana.openapi.yaml``, API_NOTES.md):

- **Auth** personal access tokens, or OAuth 2.0 at ``/-/oauth_authorize`` and ``/-/oauth_token``
  (form bodies): access tokens live 1 h, refresh tokens never rotate. Bad or missing token: 401.
  OAuth scopes are checked per endpoint (403); ``default`` grants everything.
- **Envelopes** request bodies are read from ``{"data": {...}}`` (form fields also work), answers are
  ``{"data": ...}``; errors ``{"errors": [{"message", "help", "phrase" (5xx)}]}``.
- **opt_fields** shape every answer (gid + the dotted fields asked for); lists are compact otherwise.
- **Paging** ``limit`` 1..100 (else 400), ``next_page: {offset, path, uri}`` or null; offset tokens
  are bound to their query and expire (``offset_ttl_s``): 400 after that. Without ``limit`` a list
  answers everything, or 400 "result is too large" past 1,000 records.
- **Tasks** ``custom_fields`` is an object keyed by custom field gid: enum -> an *enabled* option
  gid of that field, number -> a JSON number, text -> a string (<= 1,024 chars), date ->
  ``YYYY-MM-DD``; a field must be on one of the task's projects (a subtask without projects takes
  none). ``POST /tasks/{gid}/subtasks``; projects/followers/parent are create-only.
- **Enum options** ``POST /custom_fields/{gid}/enum_options`` (unique names, at most 500, optional
  ``insert_before``/``insert_after``), ``PUT /enum_options/{gid}`` renames or disables; a disabled
  option stays on the tasks that hold it but cannot be set again.
- **Templates** ``POST /project_templates/{gid}/instantiateProject`` answers a job; the project
  exists at once, its tasks appear when ``GET /jobs/{gid}`` says ``succeeded``.
- **Batch** ``POST /batch`` takes at most 10 actions, runs them in an order shuffled by the fault
  seed and answers each one's ``{status_code, headers, body}``: partial failure is normal. Every
  action counts against the rate limit; the fault plan's error and timeout-after rates also apply
  per action (a "timeout after" action is applied yet answered 500).
- **Rate limits** per token: 150 requests/min (free; 1,500 premium) counting refused calls and
  every batch action too, 50 concurrent reads and 15 concurrent writes (a batch holds one write
  slot; ``service_time_s`` makes requests last): 429 with ``Retry-After``. Search
  (``/workspaces/{gid}/tasks/search``) is premium-only (402 otherwise), 60/min, and eventually
  consistent (``index_delay_s``).
- **Webhooks** ``POST /webhooks {resource, target}`` sends the ``X-Hook-Secret`` handshake to the
  target during the call and fails (400) unless it is echoed with 200/204; ``localhost`` targets
  get 403. Events (task added/changed/deleted, subtasks, comments) go out as ``{"events": [...]}``
  with ``X-Hook-Signature`` = hex HMAC-SHA256(body, secret), at most once; without a 2xx in 10 s a
  delivery is retried for 24 h, then the webhook is deleted (delays scaled by ``time_scale``).
"""

from .simulator import API_PREFIX, AsanaSimulator
from .tenant import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    GID_BASE,
    demo_pat,
    demo_refresh_token,
)

WORKSPACE_GID = str(GID_BASE + 1)


def sandbox_credentials(seed: int = 0) -> dict[str, str]:
    """What :meth:`AsanaSimulator.credentials` answers for a fresh simulator with ``seed``, without building one."""
    return {
        "pat": demo_pat(seed),
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": demo_refresh_token(seed),
        "redirect_uri": DEMO_REDIRECT_URI,
        "workspace_gid": WORKSPACE_GID,
    }


__all__ = [
    "API_PREFIX",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_REDIRECT_URI",
    "WORKSPACE_GID",
    "AsanaSimulator",
    "demo_pat",
    "demo_refresh_token",
    "sandbox_credentials",
]
