"""`make cluster`'s settings: nginx on CLUSTER_PORT, 8080 unless it says otherwise."""

from __future__ import annotations

import pytest

from scripts.cluster.__main__ import ClusterSettings
from scripts.cluster.processes import ClusterError


@pytest.mark.parametrize(
    ("environ", "port"),
    [({}, 8080), ({"CLUSTER_PORT": ""}, 8080), ({"CLUSTER_PORT": "9000"}, 9000)],
)
def test_nginx_listens_on_8080_unless_cluster_port_says_otherwise(
    environ: dict[str, str], port: int
) -> None:
    assert ClusterSettings.from_environ(environ).port == port


@pytest.mark.parametrize("text", ["http", "80.5", "0", "-1", "65536"])
def test_a_cluster_port_that_is_no_port_is_refused(text: str) -> None:
    with pytest.raises(ClusterError, match="CLUSTER_PORT"):
        ClusterSettings.from_environ({"CLUSTER_PORT": text})
