"""The process: serve (start.py: settings, checks, the start block; server.py: Hypercorn's
trio worker, signals, the grace period; workers.py: WORKERS processes on one socket;
gc_tuning.py) or run a command (commands.py: migrate, keys)."""
