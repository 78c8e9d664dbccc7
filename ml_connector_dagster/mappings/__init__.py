"""Mapping tables shipped for the sandbox tenant (finance teams keep their own next to connector.yaml)."""
