"""The emergency information line: activation, provider reports, staffing (docs/infoline.md)."""
