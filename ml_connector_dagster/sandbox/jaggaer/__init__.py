"""A JAGGAER One Platform (J1P) customer instance, simulated: REST with Keycloak client credentials,
and the cXML endpoint.

There is no public J1P REST contract (``specs/`` holds only the cXML DTDs); the public hints are the
Keycloak realm token endpoint ``/auth/realms/J1p-integrations/protocol/openid-connect/token`` and
``/j1p/api/public/ji/v1/invoices/{id}``. Every route is therefore a constructor setting (each
customer's instance exposes its own paths), defaulting to those hints. Choices, and why:

- **Auth** ``POST <token_path>`` (form ``grant_type=client_credentials`` with ``client_id`` and
  ``client_secret``, or HTTP Basic), Keycloak's answers: ``expires_in`` 300 s (Keycloak's default
  lifespan, so a client must renew often), no refresh token; a missing grant type 400
  ``invalid_request``, bad credentials 401 ``invalid_client``, another grant 400
  ``unsupported_grant_type``. API calls need ``Authorization: Bearer``; without one, or with an
  expired one, 401 with ``WWW-Authenticate`` and no body (Spring Security resource server).
- **Routes** ``GET <path>`` lists, ``GET <path>/<id>`` one record, for ``purchase_orders``,
  ``invoices``, ``vendors`` (JAGGAER's suppliers) and ``gl_accounts``; paths are case-sensitive;
  anything else 404 (after authentication), other methods 405. Errors are Spring Boot's
  ``{timestamp, status, error, message, path}``.
- **Pages** Spring Data pages: ``page`` is **0-based**, ``size`` defaults to 20 and is silently
  clamped to 100 (``size`` in the answer says what was used), and the body is ``{content,
  totalElements, totalPages, number, size, numberOfElements, first, last, empty}``. Without a
  ``sort`` the order is by id, so records modified while a client pages shift under offset paging;
  ``sort=lastModifiedDate,asc`` orders by modification (then id). Any other sort property is a 400.
- **Modification filter** ``lastModifiedFrom`` (inclusive) and ``lastModifiedTo`` (exclusive),
  ISO 8601 *with* an offset (a naive value is a 400). Records answer ``lastModifiedDate`` in the
  instance's local time (Europe/Oslo) with its offset. Clusters of records share one millisecond.
- **Rate limit** a fixed window per minute over authenticated API calls; over it 429 with
  ``Retry-After`` (seconds). Token and cXML calls are not counted.
- **cXML** see :mod:`.inbound_cxml`: SharedSecret (401), DTD validation (406), real Status codes,
  HTTP 200 whatever the code; a 5xx fault answers HTTP 5xx with a cXML Status 500. Shared secrets are
  masked in ``/_sandbox/requests``.
- **Data** see :mod:`.data`: the Visma simulator's suppliers as JAGGAER vendors (names and tax ids
  in varied formats), GL accounts under JAGGAER codes (:data:`.data.GL_ACCOUNT_MAP` to Visma),
  POs with lines and invoices referencing them, a few malformed on purpose.
- **State** ``/_sandbox/state``: ``purchase_orders``, ``invoices``, ``vendors``, ``gl_accounts``
  in modification order, as a single GET answers them, and ``cxml_documents`` (accepted documents
  with the Status they got).
"""

from .data import (
    GL_ACCOUNT_MAP,
    GL_ACCOUNT_TABLE,
    GL_ACCOUNTS,
    INVOICES,
    PURCHASE_ORDERS,
    VENDORS,
    j1p_datetime,
)
from .inbound_cxml import STATUS_TEXTS, cxml_reply
from .simulator import (
    API_PREFIX,
    DEFAULT_CXML_PATH,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PATHS,
    DEFAULT_TOKEN_PATH,
    DEMO_BUYER,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CXML_SHARED_SECRET,
    DEMO_REALM,
    DEMO_SENDER,
    MAX_PAGE_SIZE,
    TOKEN_TTL_S,
    JaggaerSimulator,
    parse_filter_value,
    sandbox_credentials,
)

__all__ = [
    "API_PREFIX",
    "DEFAULT_CXML_PATH",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_PATHS",
    "DEFAULT_TOKEN_PATH",
    "DEMO_BUYER",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_CXML_SHARED_SECRET",
    "DEMO_REALM",
    "DEMO_SENDER",
    "GL_ACCOUNTS",
    "GL_ACCOUNT_MAP",
    "GL_ACCOUNT_TABLE",
    "INVOICES",
    "MAX_PAGE_SIZE",
    "PURCHASE_ORDERS",
    "STATUS_TEXTS",
    "TOKEN_TTL_S",
    "VENDORS",
    "JaggaerSimulator",
    "cxml_reply",
    "j1p_datetime",
    "parse_filter_value",
    "sandbox_credentials",
]
