"""Alerting service: the issuers' API from a crisis cell's decision to a dispatched alert."""
