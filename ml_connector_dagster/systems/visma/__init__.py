"""Visma.net ERP: the API client, its record models, the Dagster resource, webhook verification."""
