"""Cell-broadcast service: CAP requests to the operators' CBCs (API declared, requests to come)."""
