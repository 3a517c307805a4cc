"""``lbdoctor demo``: a simulated EKS cluster (fake API server, loopback pods, seeded runbook faults)."""
