"""The data-quality machinery the domains' asset checks run: Great Expectations suites
(`expectations`), one check per partition (`partitioned`) and the check result with its
table (`reporting`). The checks themselves live with their domain's assets."""
