"""A simulated operator's cell broadcast centre (ECBE REST, as osmo-cbc) and LB-SMS platform."""
