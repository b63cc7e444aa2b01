"""The compose shape without Docker: nginx with deploy/nginx.conf in front of two replicas of
`python -m service`, on the machine's PostgreSQL and Redis (`make cluster`, tests/cluster).

    python -m scripts.cluster                      # until Ctrl+C; CLUSTER_PORT (8080)

    async with running_cluster(run_dir, env) as cluster:   # tests
        cluster.url, cluster.replicas[0].kill(), await cluster.replicas[0].start()
"""

from .nginx_config import render_nginx_config
from .processes import Cluster, Replica, running_cluster

__all__ = ["Cluster", "Replica", "render_nginx_config", "running_cluster"]
