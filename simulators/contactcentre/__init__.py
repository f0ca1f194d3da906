"""A simulated contact-centre provider for the emergency information line (docs/infoline.md)."""
