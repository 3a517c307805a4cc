"""HTTP face of the daemon: /metrics, /healthz, /readyz, /api/v1/results and the status page."""
