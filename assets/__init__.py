"""Dagster assets: thin wrappers that call the core and record what the UI should show."""

import warnings

import dagster as dg

# Data versions on outputs and the multi-to-single partition mapping are marked beta in
# Dagster 1.13; they are the documented way to get content-hash staleness and fan-in.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
