"""What an operator's platform answered, sorted by what the caller does next.

The cell broadcast service acts on the same answers and may not import a gateway, so they are
defined in telecom.answers; the CBC and LB-SMS clients name them from here.
"""

from telecom.answers import Answer, Outcome

__all__ = ["Answer", "Outcome"]
