"""The routes, by domain: the streams (streams.py: /api/process, resume, cancel), the
OpenAI-compatible API (openai.py), history (conversations.py), keys and usage, and the
service's own (service.py: health, readiness, the ensemble, metrics). front_door.py is the
path from body to run that the two routes which run a message share."""
