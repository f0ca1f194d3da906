"""The channel worker every channel service is built on (docs/channel.md)."""
