"""Specification of the webhook receiver, the vendors' verifiers and the inbox sensor."""
