"""Ray's fake multi-node provider, with a temp dir of its own for every worker node.

Ray 2.60's ``FakeMultiNodeProvider`` starts every fake node in the head's temp dir, so all nodes
share one ``runtime_resources`` folder: when a second node unpacks a job's ``working_dir`` it
replaces the folder that the first node's workers already run in, and those workers die
(``getcwd`` fails; torch's MKL aborts with "Cannot load libtorch_cpu.so"). A node of a real
cluster has its own disk; here each gets its own temp dir, ``<head temp dir>/../nodes/<id>``,
which is also where its logs, sockets and spilled objects go.

Named in ``infra/rehearsal/cluster.yaml`` as ``provider: {type: external, module: ...}``; it runs
inside the autoscaler (the head's ``monitor.py``). The body of :meth:`_create_node_with_resources_
and_labels` follows Ray's own, plus ``temp_dir`` and the node status noted there.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import ray
import ray._private.ray_constants as ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

NODES_DIR = "nodes"  # beside the head's temp dir, inside the rehearsal's state dir


class RehearsalNodeProvider(FakeMultiNodeProvider):
    """Fake worker nodes, each with its own temp dir (``provider.nodes_dir`` in the config)."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        self._nodes_dir = Path(provider_config["nodes_dir"])

    def _create_node_with_resources_and_labels(
        self, node_config: dict, tags: dict, count: int, resources: dict, labels: dict
    ) -> None:
        resources = copy.deepcopy(resources)  # popped below
        with self.lock:
            node_type = tags[TAG_RAY_USER_NODE_TYPE]
            next_id = self._next_hex_node_id()
            temp_dir = self._nodes_dir / next_id[-5:]
            temp_dir.mkdir(parents=True, exist_ok=True)
            ray_params = ray._private.parameter.RayParams(
                min_worker_port=0,
                max_worker_port=0,
                dashboard_port=None,
                dashboard_agent_listen_port=0,
                num_cpus=resources.pop("CPU", 0),
                num_gpus=resources.pop("GPU", 0),
                object_store_memory=resources.pop("object_store_memory", None),
                resources=resources,
                labels=labels,
                redis_address=self._gcs_address,
                gcs_address=self._gcs_address,
                temp_dir=str(temp_dir),
                env_vars={
                    "RAY_OVERRIDE_NODE_ID_FOR_TESTING": next_id,
                    "RAY_CLOUD_INSTANCE_ID": next_id,
                    "RAY_NODE_TYPE_NAME": node_type,
                    ray_constants.RESOURCES_ENVIRONMENT_VARIABLE: json.dumps(resources),
                    ray_constants.LABELS_ENVIRONMENT_VARIABLE: json.dumps(labels),
                },
            )
            node = ray._private.node.Node(
                ray_params, head=False, shutdown_at_exit=False, spawn_reaper=False
            )
            all_tags = {
                TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
                TAG_RAY_USER_NODE_TYPE: node_type,
                TAG_RAY_NODE_NAME: next_id,
                TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
            }
            all_tags.update(tags)
            # Ray's provider lets the launch tag ("uninitialized") win, and its tags are read-only:
            # a node stayed "uninitialized" for good, and the autoscaler, which watches only
            # up-to-date nodes' heartbeats, never replaced a lost one. There is no updater to
            # wait for: a fake node is up to date once started.
            all_tags[TAG_RAY_NODE_STATUS] = STATUS_UP_TO_DATE
            self._nodes[next_id] = {"tags": all_tags, "node": node}


def nodes_dir(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / NODES_DIR
