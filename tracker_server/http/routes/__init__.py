"""REST routes, one module per resource; each converts, calls one domain service and
returns JSON (errors are mapped in ``http/errors.py``)."""
