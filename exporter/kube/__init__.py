"""Kubernetes adapter: the only code that talks to the API server. Hands over model objects."""
