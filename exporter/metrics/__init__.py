"""Metric names, the exposition renderer and the collectors. Collectors only render published data."""
