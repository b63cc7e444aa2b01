"""What the API publishes and reads: the OpenAPI document built from the routes
(document.py), the response and query models (schemas.py), the streams' events and chunks
(event_schemas.py), the /api/process body (process_request.py) and the rules every id and
text follows (validation.py)."""
