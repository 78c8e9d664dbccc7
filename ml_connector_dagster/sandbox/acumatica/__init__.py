"""An Acumatica ERP instance, simulated: the contract-based REST API, endpoint Default/24.200.001.

Contract: ``specs/acumatica-default-24.200.001.openapi.json`` (and the XML endpoint metadata in
``shared/specs/acumatica/EndpointMetadata/``); behaviour: ``API_NOTES.md``. One tenant, Nordvik
(Nordvik Distribusjon AS, a distributor in Oslo) with Nordic vendors, AP bills with their lines,
purchase orders and customer payments, some of them in exception states. Never more forgiving than
the real service:

- **Identity** OAuth 2.0 at ``/identity/connect/token`` (password and refresh_token grants, client id
  ``<GUID>@Nordvik``, scopes ``api offline_access``), discovery at
  ``/identity/.well-known/openid-configuration``, sign-out at ``POST /entity/auth/logout``; API
  sessions count against the licence (a trial allows 2 API users; the third sign-in is refused
  with ``API Login Limit``); in-flight requests beyond the licence's limit answer 429. See
  :mod:`.identity`.
- **Version pinning** only ``/entity/Default/24.200.001/...`` exists; any other endpoint or version
  answers 404. ``GET /entity`` lists what the instance offers.
- **Records** every field a value object (``{"value": x}``, null as ``{}``), ``id``/``rowNumber``
  bare, date-times in Europe/Oslo with their offset; detail rows (``Details``, ``TaxDetails`` ...)
  only with ``$expand``; ``$select`` trims. Lists are ordered by the entity's keys, paged with
  ``$top``/``$skip`` (no total count; without ``$top`` everything comes back), filtered with the
  OData subset of :mod:`.odata` (``LastModifiedDateTime gt datetimeoffset'...'``).
- **PUT** upserts by ``id`` or the key fields; ``If-None-Match: *`` inserts only (412 when the record
  exists), ``If-Match: *`` updates only (412 when it does not). A bare value where a value object
  belongs is a 400 naming the field; a rule a document breaks (out of balance, unknown vendor,
  editing a released document) is a 422 with the record and the field's ``error``. Bills and POs
  are entered on hold; taking one off hold puts it to approval above 100,000 NOK, else Balanced
  (bill) or Open (PO). Bills validate their control total (``Amount``) against lines plus tax.
- **Actions** ``POST .../Bill/ReleaseBill`` and ``.../Payment/ReleasePayment`` with ``{"entity",
  "parameters"}`` answer 202 and ``Location: .../ReleaseBill/status/<id>``; the release runs for
  ``action_duration_s`` on the simulator's clock whether or not anyone polls; the status answers
  202 while running, 204 when done, else 500 with the PXException (``Document Status is invalid
  for processing.`` for a document already released: releases are not idempotent). Purchase
  orders have no endpoint actions in this version, only the generic ``/PurchaseOrder/{actionName}``
  route, where the graph's ``Approve``, ``Reject``, ``ReleaseFromHold`` and ``PutOnHold`` run at once
  (204 with the record's ``Location``).
- **Push notifications** each change of a bill, PO or payment POSTs ``{Inserted, Deleted, Query,
  CompanyId, Id, TimeStamp, AdditionalInfo}`` (an update: the old row in ``Deleted``, the new in
  ``Inserted``; rows are the inquiry's plain columns) to ``webhook_url`` with one static header,
  resent up to 5 times on error; queries ``Bills``, ``PurchaseOrders``, ``Payments``.
- **Errors** Acumatica's ``HttpError`` (``message``, ``exceptionMessage``, ``exceptionType``).
- Python helpers (``put_bill_on_hold``, ``mark_unbalanced``, ``reject_po``, ``payment_exception`` ...)
  change documents as a user would, with a new ``LastModifiedDateTime`` and a push notification.
"""

from .identity import (
    API_LOGIN_LIMIT,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SCOPE,
    DEMO_USERNAME,
    TRIAL,
    Licence,
)
from .odata import ODataError, lower_bound, parse_filter
from .records import COMPANY_ID, COMPANY_NAME
from .simulator import DEMO_PUSH_TOKEN, ENDPOINT, VERSION, AcumaticaSimulator, sandbox_credentials

__all__ = [
    "API_LOGIN_LIMIT",
    "COMPANY_ID",
    "COMPANY_NAME",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_PASSWORD",
    "DEMO_PUSH_TOKEN",
    "DEMO_SCOPE",
    "DEMO_USERNAME",
    "ENDPOINT",
    "TRIAL",
    "VERSION",
    "AcumaticaSimulator",
    "Licence",
    "ODataError",
    "lower_bound",
    "parse_filter",
    "sandbox_credentials",
]
