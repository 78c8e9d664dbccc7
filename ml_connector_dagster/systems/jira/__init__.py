"""Jira Cloud: the REST v3 client (``client``), its records (``models``), the Dagster resource
(``resource``) and the ADF builder (``adf``). Import from the modules; this package imports nothing
so that ``adf`` stays cheap to import."""
