"""The cluster's nginx config is deploy/nginx.conf itself, with only the replicas' and its
own local addresses put in: a file that lost either line is refused, never half-rendered.
And compose runs the same file, in front of two replicas, as the cluster does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from scripts.cluster.nginx_config import NginxConfigError, render_nginx_config
from scripts.cluster.processes import NGINX_CONF, ROOT
from service.process.server import hypercorn_config
from service.settings import load_settings

UPSTREAMS = ["127.0.0.1:40001", "127.0.0.1:40002"]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Where the nginx image reads its config (`nginx -V`: --conf-path), with no command given.
NGINX_READS = "/etc/nginx/nginx.conf"


def render(source: str) -> str:
    return render_nginx_config(
        source, upstreams=UPSTREAMS, listen="127.0.0.1:9000", run_dir=Path("/run/x")
    )


def test_the_compose_file_is_rendered_with_local_addresses_and_nothing_else_changed() -> None:
    source = NGINX_CONF.read_text()
    rendered = render(source)
    parameters = source.split("server fanout:8080", 1)[1].split(";", 1)[0]
    assert "fanout:8080" not in rendered
    for address in UPSTREAMS:
        assert f"server {address}{parameters};" in rendered
    assert "listen 127.0.0.1:9000;" in rendered
    # Every proxying directive of the file is there as written.
    for line in source.splitlines():
        if line.strip().startswith(("proxy_", "keepalive")):
            assert line in rendered.splitlines(), line


@pytest.mark.parametrize("missing", ["server fanout:8080", "listen 8080;"])
def test_a_file_without_a_line_the_cluster_replaces_is_refused(missing: str) -> None:
    source = NGINX_CONF.read_text().replace(missing, "# gone")
    with pytest.raises(NginxConfigError):
        render(source)


def test_nginx_lets_go_of_an_idle_connection_before_the_replica_closes_it() -> None:
    """Else a request of nginx's can meet a connection the replica is closing that instant
    (a GET is sent again; a POST other than a start is answered 502)."""
    found = re.search(r"^\s*keepalive_timeout\s+(\d+)s;", NGINX_CONF.read_text(), re.M)
    assert found is not None, "the upstream block has no keepalive_timeout"
    settings = load_settings({"USE_LLM_MOCK": "true"}, dotenv_path=None)
    assert int(found[1]) < hypercorn_config(settings).keep_alive_timeout


def test_compose_runs_nginx_with_the_same_file_in_front_of_two_replicas() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    balancer = services["balancer"]
    assert balancer["image"].startswith("nginx:")
    mounts = {
        target: (ROOT / source).resolve()
        for source, target, *_options in (volume.split(":") for volume in balancer["volumes"])
    }
    assert mounts.get(NGINX_READS) == NGINX_CONF, mounts
    # The image's own command, which reads NGINX_READS (no `-c` of another file).
    assert not {"command", "entrypoint"} & balancer.keys()
    # The upstream's `server fanout:8080` names this service, on the port it listens on.
    assert services["fanout"]["environment"]["HTTP_ADDR"] == ":8080"
    assert services["fanout"]["deploy"]["replicas"] == 2
