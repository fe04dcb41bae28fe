"""The composition root: definitions, jobs, sensors and schedules."""
