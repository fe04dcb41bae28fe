"""policyeval: policy-as-code evaluation for model policy teams.

The domain core: policies, eval sets, model runs, graders, metrics. It knows nothing of
the orchestrator that drives it.
"""

__version__ = "0.1.0"
