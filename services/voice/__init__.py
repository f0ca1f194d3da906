"""Voice service: calls over SIP/RTP with offline text to speech (API declared, calling to come)."""
