"""The three-node RabbitMQ fixture itself: one cluster, quorum queues replicated on every node, and a
leader that is killed and started again keeps what it had confirmed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import pytest

from tests import mqtt
from tests.cluster import Cluster, RabbitMQMissingError, require_rabbitmq
from tests.mqtt import Collector
from tests.rig import until, wait_for


def test_cluster_three_nodes_form_one_cluster(rabbit_cluster: Cluster) -> None:
    names = {node.name for node in rabbit_cluster.nodes}
    assert len(names) == 3
    for i in range(3):
        assert rabbit_cluster.running_nodes(i) == names


def test_cluster_nodes_listen_on_their_own_ports(rabbit_cluster: Cluster) -> None:
    ports = [p for n in rabbit_cluster.nodes for p in (n.amqp_port, n.mqtt_port, n.dist_port)]
    assert len(set(ports)) == 9
    assert not {5672, 1883} & set(ports), "the machine's own broker ports"
    assert rabbit_cluster.amqp_urls().count(",") == 2
    assert rabbit_cluster.nodes[1].mqtt_url("v:guest", "guest") == \
        f"mqtt://v%3Aguest:guest@127.0.0.1:{rabbit_cluster.nodes[1].mqtt_port}"


async def _declare_and_publish(url: str, queue: str, bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for body in bodies:
            # with confirms on, publish returns once the queue's quorum stored it
            await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=queue)


async def _consume(url: str, queue: str, count: int) -> list[bytes]:
    connection = await aio_pika.connect(url)
    got: list[bytes] = []
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=False)
        async with asyncio.timeout(60), q.iterator() as messages:
            async for message in messages:
                async with message.process():
                    got.append(message.body)
                if len(got) == count:
                    break
    return got


async def test_cluster_quorum_queue_has_members_on_every_node(rabbit_cluster: Cluster) -> None:
    vhost = rabbit_cluster.new_vhost()
    await _declare_and_publish(rabbit_cluster.nodes[0].amqp_url(vhost=vhost), "q.members", [])
    assert rabbit_cluster.queue_members("q.members", vhost) == {0, 1, 2}
    assert rabbit_cluster.queue_leader("q.members", vhost) in {0, 1, 2}


async def test_cluster_leader_killed_and_started_keeps_confirmed_messages(rabbit_cluster: Cluster) -> None:
    vhost = rabbit_cluster.new_vhost()
    bodies = [f"m{i}".encode() for i in range(20)]
    await _declare_and_publish(rabbit_cluster.nodes[0].amqp_url(vhost=vhost), "q.kill", bodies)
    leader = rabbit_cluster.queue_leader("q.kill", vhost)
    beam = rabbit_cluster.nodes[leader].beam_pid()
    rabbit_cluster.kill(leader)
    try:
        other = (leader + 1) % 3
        assert rabbit_cluster.nodes[leader].name not in rabbit_cluster.running_nodes(other)
        # a new leader is elected among the two left
        await until(lambda: rabbit_cluster.queue_leader("q.kill", vhost) != leader, timeout=60, interval=0.5,
                    what="a new leader of q.kill among the two nodes left")
    finally:
        rabbit_cluster.start(leader)
    assert rabbit_cluster.nodes[leader].beam_pid() != beam
    assert rabbit_cluster.running_nodes(leader) == {n.name for n in rabbit_cluster.nodes}
    got = await _consume(rabbit_cluster.nodes[leader].amqp_url(vhost=vhost), "q.kill", len(bodies))
    assert got == bodies


def test_cluster_missing_server_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """No rabbitmq-server: the fixture fails (CI installs it), it never skips."""
    monkeypatch.setattr("tests.cluster.RABBITMQ_SERVER", Path("/nonexistent/rabbitmq-server"))
    with pytest.raises(RabbitMQMissingError, match=r"setup\.sh"):
        require_rabbitmq()


def test_cluster_mqtt_crosses_nodes_in_a_vhost_and_lets_anonymous_in(rabbit_cluster: Cluster) -> None:
    """A subscriber on node 1 in the test's vhost ("vhost:guest") gets what a client on node 2 publishes
    there; an anonymous client (guest, vhost /) gets in too."""
    vhost = rabbit_cluster.new_vhost()
    one, two = rabbit_cluster.nodes[1], rabbit_cluster.nodes[2]
    collector = Collector(one.mqtt_port, "stations/v1/+/occupancy", username=f"{vhost}:guest", password="guest")
    try:
        publisher = mqtt.client(two.mqtt_port, username=f"{vhost}:guest", password="guest")
        publisher.connect("127.0.0.1", two.mqtt_port)
        publisher.loop_start()
        try:
            publisher.publish("stations/v1/PL-KT-001/occupancy", b"{}", qos=1).wait_for_publish(10)
        finally:
            publisher.disconnect()
            publisher.loop_stop()
        wait_for(lambda: collector.messages, timeout=30, what="the message published on node 2")
        assert [m.topic for m in collector.messages] == ["stations/v1/PL-KT-001/occupancy"]
    finally:
        collector.close()
    anonymous = Collector(two.mqtt_port, "stations/v1/#")
    anonymous.close()
