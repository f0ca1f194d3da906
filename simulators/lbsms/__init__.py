"""A simulated operator's location-based SMS platform."""
