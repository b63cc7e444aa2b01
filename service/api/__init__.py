"""HTTP adapters only: request parsing and validation, the error envelope, SSE framing.

Nothing is imported here, so that a command that needs one light module of the package (the
id rule, a key's JSON shape) does not load every route: import from the modules themselves
(`from .api.routes import routes`).
"""
