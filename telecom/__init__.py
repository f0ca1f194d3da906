"""What the gateways and the services both speak of an operator's network: pure data, no I/O.

A leaf: it imports no other package of ours, so that a gateway and a service may both import it
(a service never imports a gateway but in its `__main__`, a gateway never a service).
"""
