"""Dagster assets: thin wrappers that call the core and record what the UI should show."""
