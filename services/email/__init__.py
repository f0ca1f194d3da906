"""E-mail channel: the e-mail stream to the deployment's SMTP relay, on the channel worker."""
