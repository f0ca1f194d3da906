"""The public CAP 1.2 feed: an Atom index of alerts in force and every CAP document, over HTTP."""
