"""The Dagster definitions, grouped by domain as Dagster's example projects group them:
`evaluation/`, `human_data/` and `reports/` each hold their assets, asset checks, jobs,
sensors and schedules side by side. Beside them, what every domain shares: partitions,
the failure wrapper and the reading of earlier materializations."""
