"""Operators' location-based SMS platforms: a JSON request over HTTP (docs/cellbroadcast.md)."""
