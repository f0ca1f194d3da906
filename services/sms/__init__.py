"""SMS service: consumes the SMS work stream, submits over SMPP, records every recipient's state."""
