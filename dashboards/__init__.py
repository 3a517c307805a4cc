"""lbdoctor's Grafana dashboards, generated from code: ``python -m dashboards`` rewrites dashboards/*.json."""
