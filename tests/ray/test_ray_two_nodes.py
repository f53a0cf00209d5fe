"""Two Ray nodes on 127.0.0.1 (Ray's test cluster helper); one dies mid-stream.

The head node (1 CPU) runs the driver's source and sink actors and one worker; the second node
(1 CPU) the other worker. Removing the second node (its processes killed) kills that worker:
the application rolls back to its last checkpoint and is redeployed on the head node alone,
and the committed output is still exactly the input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from ray_helpers import HEALTH_CHECKS, RAY_ENV, RayPipeline, require_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def two_nodes() -> Iterator[tuple[object, object]]:
    require_ray()
    os.environ.update(RAY_ENV)
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 1, "_system_config": HEALTH_CHECKS},
    )
    try:
        node_b = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster, node_b
    finally:
        cluster.shutdown()  # never `ray stop`


def test_a_node_dies_and_the_output_stays_exact(two_nodes, tmp_path):
    cluster, node_b = two_nodes
    run = RayPipeline(tmp_path, keys=100, per_key=1000, files=3, rate=6000,
                      workers=2, ray_address=cluster.address)  # fmt: skip
    with run.reporting():
        run.start()
        status = run.wait_running()
        nodes = {a["name"]: a["node"] for a in status["actors"]}
        assert nodes["w0"] != nodes["w1"], "one worker per node"
        assert nodes["w1"] == node_b.node_id or nodes["w0"] == node_b.node_id
        lost = "w1" if nodes["w1"] == node_b.node_id else "w0"
        run.wait_committed(0.3)
        assert run.source.running
        run.record("node B removed", f"it ran {lost}")
        cluster.remove_node(node_b, allow_graceful=False)
        status = run.wait_running(1)
        assert {a["node"] for a in status["actors"]} == {nodes["s0"]}  # all on the head now
        run.finish(timeout=150)
        run.check_output()
        log = run.worker.log()
        assert f"worker actor {lost} (pid" in log
        assert "and that node is gone" in log
        assert "rolling the application back to checkpoint" in log
