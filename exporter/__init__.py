"""lbdoctor: the EKS load-balancer health-check runbook, run continuously as a Prometheus exporter."""

__version__ = "0.1.0"
