"""A real Redis Cluster on loopback for the tests and benchmarks: masters started as `RedisServer(cluster=True)`,
slots split evenly between them, no replicas (a killed master comes back from its own AOF and nodes.conf)."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from blinkstack.local.processes import free_port, port_in_use
from blinkstack.local.redis_server import RedisServer

SLOTS = 16384
BUS_OFFSET = 10_000  # a node also listens on its port + 10000 for the cluster bus


def cluster_port() -> int:
    """A free loopback port whose bus port is free too (so at most 65535 - 10000)."""
    while True:
        port = free_port()
        if port + BUS_OFFSET <= 65535 and not port_in_use("127.0.0.1", port + BUS_OFFSET):
            return port


class LocalRedisCluster:
    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        password = "cluster-test-password"
        self.nodes = [
            RedisServer(cluster_port(), data_dir / f"node{i}", password=password, cluster=True) for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """Any one node: the cluster client finds the others."""
        return self.nodes[0].url

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host=node.host, port=node.port, password=node.password)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        share = SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1
            with self.client(node) as client:
                client.execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last + 1))
                for other in self.nodes[1:]:
                    client.execute_command("CLUSTER", "MEET", other.host, other.port)
        self.wait_until_ok()

    def wait_until_ok(self, timeout_s: float = 30.0) -> None:
        """Every node sees the whole cluster, every slot covered."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                with self.client(node) as client:
                    states.append(client.execute_command("CLUSTER", "INFO").decode())
            if all("cluster_state:ok" in s and f"cluster_known_nodes:{len(self.nodes)}" in s for s in states):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the cluster did not come up within {timeout_s:.0f} s: {states}")

    def node_of(self, key: str) -> RedisServer:
        """The master that serves `key`'s slot."""
        with self.client(self.nodes[0]) as client:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
        share = SLOTS // len(self.nodes)
        return self.nodes[min(slot // share, len(self.nodes) - 1)]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
