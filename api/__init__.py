"""The HTTP facade: parse, call a service in app/, map the outcome to HTTP."""
