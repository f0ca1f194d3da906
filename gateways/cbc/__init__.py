"""Cell broadcast centres: the ECBE REST interface of Osmocom's osmo-cbc (docs/cellbroadcast.md)."""
