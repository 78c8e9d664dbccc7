"""A Jira Cloud site, simulated: REST v3, OAuth 2.0 (3LO), JQL search, workflows and webhooks.

One site (a fixed cloudId) with three projects of a Nordic manufacturer: FIN "Finance AP", PROC
"Procurement" and ACU "Acumatica exceptions". It is never more forgiving than Jira Cloud:

- 3LO at the real paths (``/authorize``, ``/oauth/token``, ``/oauth/token/accessible-resources``):
  access tokens live 1 h; every refresh rotates the refresh token and the old one dies after a reuse
  window; refresh tokens expire after 90 idle days; a bad one answers 403 ``invalid_grant``. API
  calls go to ``/ex/jira/{cloudId}/rest/api/3/...`` with a Bearer token whose scopes are checked;
  API-token basic auth also works there and on the site-style ``/rest/api/3/...``.
- v3 rich-text fields take ADF only, validated against the published schema; unknown fields,
  fields off the create screen, non-numbers in number fields, bad dates: 400 in Jira's words.
- Search is ``/search/jql`` only (``/search`` answers 410), refuses unbounded JQL, pages with
  ``nextPageToken``, and reads an eventually consistent index: a write becomes visible to JQL
  ``index_delay_s`` (sim clock) after it happened, unless its id is in ``reconcileIssues``. JQL
  date literals have no zone: they are read in the *caller's* timezone (America/Los_Angeles for the
  demo user); epoch milliseconds are unambiguous.
- Dynamic webhooks (OAuth apps) expire after 30 days, at most 5 per app and user, and their
  deliveries carry a HS256 JWT signed with the app secret; admin webhooks sign with
  ``X-Hub-Signature``. Retries keep ``X-Atlassian-Webhook-Identifier``.
- Per-endpoint burst rate limit: 429 with ``Retry-After``, ``X-RateLimit-*``, ``RateLimit-Reason``.
"""

from .jql import JqlError, parse_jql
from .simulator import JiraSimulator, demo_refresh_token, sandbox_credentials
from .site import (
    CLOUD_ID,
    DEMO_API_TOKEN,
    DEMO_APP_SECRET,
    DEMO_CLIENT_ID,
    DEMO_EMAIL,
    DEMO_REDIRECT_URI,
    DEMO_SCOPES,
    DEMO_WEBHOOK_SECRET,
    SITE_NAME,
    jira_time,
)

__all__ = [
    "demo_refresh_token",
    "sandbox_credentials",
    "CLOUD_ID",
    "DEMO_API_TOKEN",
    "DEMO_APP_SECRET",
    "DEMO_CLIENT_ID",
    "DEMO_EMAIL",
    "DEMO_REDIRECT_URI",
    "DEMO_SCOPES",
    "DEMO_WEBHOOK_SECRET",
    "JiraSimulator",
    "JqlError",
    "SITE_NAME",
    "jira_time",
    "parse_jql",
]
