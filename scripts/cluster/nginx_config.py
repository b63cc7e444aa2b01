"""deploy/nginx.conf, the file docker-compose.yml mounts, made runnable on this machine.

Only what Docker's network names differently changes: the one `server fanout:8080 ...;`
line of the upstream becomes one line per local replica with the same parameters, and
`listen 8080;` becomes the local address. Everything that decides how requests are proxied
(buffering, timeouts, keep-alive, the forwarded headers) is read from the file as it is.
What a process not run as root needs is added around it: the pid file, the logs and the
temporary files in the run directory, in the foreground. A file that no longer has those
two lines exactly once is refused, so the cluster cannot silently drift from compose.

    text = render_nginx_config(Path("deploy/nginx.conf").read_text(),
                               upstreams=["127.0.0.1:8001", "127.0.0.1:8002"],
                               listen="127.0.0.1:8080", run_dir=Path("/tmp/run"))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

UPSTREAM_SERVER = re.compile(
    r"^(?P<indent>[ \t]*)server[ \t]+fanout:8080(?P<parameters>[^;]*);", re.M
)
LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+8080;", re.M)
HTTP_BLOCK = re.compile(r"^http[ \t]*\{[ \t]*\n", re.M)

# One JSON line per request: which replica (or replicas, after a retry) answered, and how.
ACCESS_LOG_FORMAT = (
    'escape=json \'{"time":$msec,"status":$status,"method":"$request_method",'
    '"uri":"$request_uri","upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","seconds":$request_time}\''
)
TEMPORARY_FILES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxConfigError(ValueError):
    """deploy/nginx.conf no longer has the lines the cluster replaces."""


def _one(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    found = list(pattern.finditer(text))
    if len(found) != 1:
        raise NginxConfigError(
            f"expected exactly one {what} in the nginx config, found {len(found)}"
        )
    return found[0]


def render_nginx_config(
    source: str, *, upstreams: Sequence[str], listen: str, run_dir: Path
) -> str:
    """The config for nginx -c: `source` with the replicas' and nginx's own local addresses."""
    if not upstreams:
        raise ValueError("at least one upstream address")
    server = _one(UPSTREAM_SERVER, source, "`server fanout:8080 ...;` line")
    servers = "\n".join(
        f"{server['indent']}server {address}{server['parameters']};" for address in upstreams
    )
    text = source[: server.start()] + servers + source[server.end() :]
    listening = _one(LISTEN, text, "`listen 8080;` line")
    text = (
        text[: listening.start()]
        + f"{listening['indent']}listen {listen};"
        + text[listening.end() :]
    )
    http = _one(HTTP_BLOCK, text, "`http {` block")
    local_files = [
        "    # Added by scripts/cluster: this run's files, outside /var.",
        f"    log_format upstreams {ACCESS_LOG_FORMAT};",
        f"    access_log {run_dir / 'access.log'} upstreams;",
        *(f"    {kind}_temp_path {run_dir / 'temp' / kind};" for kind in TEMPORARY_FILES),
    ]
    text = text[: http.end()] + "\n".join(local_files) + "\n\n" + text[http.end() :]
    main = [
        "# deploy/nginx.conf, rendered by scripts/cluster for this machine.",
        "daemon off;",
        f"pid {run_dir / 'nginx.pid'};",
        "error_log stderr notice;",
    ]
    return "\n".join(main) + "\n" + text
