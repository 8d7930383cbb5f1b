"""Latency from a sign-in decision to an OPC UA subscriber (issue 14).

A program, not a pytest test (no test_ functions, so pytest collects nothing
here):

    CARGO_TARGET_DIR=... .venv/bin/python tests/opcua/bench_latency.py [--rounds N]

It starts the `line_server` example (build it first with
`cargo build -p kubevision-opcua --examples`), subscribes with asyncua to
Session.SignedIn and Session.SignedInAt at the shortest publishing interval
the server grants (it asks for 1 ms and prints what it got), and runs N
sign-in / sign-out rounds. For each sign-in it measures

    arrival of the SignedInAt data change at the subscriber (time.time())
  - SignedInAt itself, which the driver stamps with SystemTime::now() at the
    moment it decides the sign-in, before it publishes,

so the figure covers the kiosk's publish call, the server thread writing the
value, the wait for the subscription's next publishing tick, encoding, TCP on
loopback and asyncua decoding the notification. Both clocks are the same
machine's wall clock. The pause between rounds is random (50-150 ms) so that
sign-ins fall at every phase of the publishing interval, as real ones do.

Prints p50, p99 and max in ms, and the publishing and sampling intervals used.
The target (issue 14) is 100 ms.
"""

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asyncua import Client, ua  # noqa: E402

from test_opcua_line import LineServer  # noqa: E402

TARGET_MS = 100.0


class Arrivals:
    """Wall-clock arrival times of SignedInAt values, and the SignedIn state."""

    def __init__(self):
        self.signed_in_at = []  # (arrival time.time(), SignedInAt as a POSIX time)
        self.signed_in = None
        self.changed = asyncio.Event()

    def datachange_notification(self, node, val, data):
        now = time.time()
        name = node.nodeid.Identifier.rsplit(".", 1)[-1]
        if name == "SignedInAt":
            if val is not None and val.year > 1601:
                at = val.replace(tzinfo=timezone.utc) if val.tzinfo is None else val
                self.signed_in_at.append((now, at.timestamp()))
        elif name == "SignedIn":
            self.signed_in = val
        self.changed.set()

    async def until(self, predicate, timeout=5):
        async def loop():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def measure(server, rounds):
    async with Client(server.url) as client:
        arrivals = Arrivals()
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=1,
            RequestedLifetimeCount=60000,
            RequestedMaxKeepAliveCount=3000,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = await client.create_subscription(params, arrivals)
        # asyncua keeps the revised values to itself; a ModifySubscription
        # with the same request answers with the interval the server grants.
        granted = await sub.update(
            ua.ModifySubscriptionParameters(
                SubscriptionId=sub.subscription_id,
                RequestedPublishingInterval=1,
                RequestedLifetimeCount=60000,
                RequestedMaxKeepAliveCount=3000,
                MaxNotificationsPerPublish=0,
                Priority=0,
            )
        )
        nodes = [client.get_node(ua.NodeId(f"KubeVision.Session.{n}", server.ns)) for n in ["SignedIn", "SignedInAt"]]
        results = await sub.subscribe_data_change(nodes, sampling_interval=0)
        assert all(isinstance(r, int) for r in results), results
        sampling = await client.get_node(ua.ObjectIds.Server_ServerCapabilities_MinSupportedSampleRate).read_value()
        await arrivals.until(lambda: arrivals.signed_in is False)

        latencies = []
        for _ in range(rounds):
            before = len(arrivals.signed_in_at)
            server.send("sign_in 3")
            await arrivals.until(lambda: len(arrivals.signed_in_at) > before and arrivals.signed_in is True)
            arrived, decided = arrivals.signed_in_at[-1]
            latencies.append((arrived - decided) * 1000)
            await asyncio.sleep(random.uniform(0.05, 0.15))
            server.send("sign_out")
            await arrivals.until(lambda: arrivals.signed_in is False)
            await asyncio.sleep(random.uniform(0.05, 0.15))
        await sub.delete()
        return latencies, granted.RevisedPublishingInterval, sampling


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = LineServer(Path(tmp))
        try:
            latencies, interval, sampling = asyncio.run(measure(server, args.rounds))
        finally:
            server.stop()

    p50, p99, worst = statistics.median(latencies), percentile(latencies, 99), max(latencies)
    print(f"rounds: {len(latencies)}")
    print(f"publishing interval: {interval:g} ms (granted; asked for 1 ms)")
    print(f"min supported sample rate: {sampling:g} ms")
    print(f"sign-in decision -> subscriber: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
    print(f"target {TARGET_MS:g} ms: {'met' if p99 <= TARGET_MS else 'MISSED'} at p99")


if __name__ == "__main__":
    main()
