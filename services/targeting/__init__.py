"""Targeting: who an alert must reach, per channel and language (issue 5)."""
