"""How a run's frames are written to a client: the response body that sends them
(event_stream.py), as Server-Sent Events (sse.py) or as OpenAI's chunks (chat_format.py)."""
