"""llm-fanout (the console script) or python -m service: read settings, check the ensemble
and the database, serve until SIGTERM / SIGINT. WORKERS=1 serves in this process; WORKERS=n
supervises n worker processes (process/workers.py).

    llm-fanout            # serve
    llm-fanout migrate    # bring DATABASE_URL's schema up to date, then exit
    llm-fanout keys ...   # create, list and revoke API keys (process/commands.py)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    command = sys.argv[1:] if argv is None else argv
    if command:
        from .process.commands import run_command

        return run_command(command)
    from .process.gc_tuning import pause_for_start_up

    pause_for_start_up()
    from .process.start import serve

    return serve()


if __name__ == "__main__":
    sys.exit(main())
