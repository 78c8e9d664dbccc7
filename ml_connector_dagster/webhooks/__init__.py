"""The webhook receiver: an ASGI (Starlette) app that verifies deliveries and appends them to the inbox.

``contract`` is what vendor verifiers (``systems/<vendor>/webhook.py``) speak, ``signatures`` the
crypto they share, ``receiver`` the generic app (routing, size limit, verify -> inbox, counters),
``configured`` the app as ``connector.yaml`` describes it (``ml-connector webhooks serve``).
"""
