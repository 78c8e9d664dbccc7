"""Asana: its vendor quirks (import from the modules; this package imports nothing)."""
