"""The daemon's roles: wiring adapters, checks and publication together."""
