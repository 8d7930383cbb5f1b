"""An independent OPC UA client (Python asyncua) for the kiosk's end-to-end
tests (hmi/tests/opcua_line.rs): the Rust test drives the real kiosk through
egui_kittest and this client through stdin, and reads what the client saw on
stdout. Not a pytest module (no test_ prefix).

    line_client.py --url opc.tcp://127.0.0.1:PORT/ --dir DIR [--user U --password P]

stdin:  connect | signout | quit
stdout: CERT <path>                      the client's certificate (made at start)
        REFUSED <why>                    a connect that failed
        CONNECTED ns=<index>
        DATA <node identifier> <value>   every data change of the Session variables
        EVENT <event type> <field>=<value> ...
        CALLED SignOut | CALL_FAILED <why>

It connects with Basic256Sha256 SignAndEncrypt and its own self-signed
certificate, subscribes to the Session variables and to the SignedIn and
SignedOut events, and calls SignOut() when told."""

import argparse
import asyncio
import sys
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from line_events import session_event_filter

NAMESPACE = "urn:kubevision:line"
WATCHED = ["SignedIn", "PersonnelNumber", "Role", "AccessLevel", "Factors"]
EVENT_FIELDS = ["PersonnelNumber", "Role", "AccessLevel", "Factors"]


def say(line):
    print(line, flush=True)


class Handler:
    def datachange_notification(self, node, val, data):
        # The event item's one "waiting for initial data" change is no data.
        if node.nodeid.Identifier != "KubeVision.Session":
            say(f"DATA {node.nodeid.Identifier} {val}")

    def event_notification(self, event):
        fields = event.get_event_props_as_fields_dict()
        event_type = fields.get("EventType")
        name = event_type.Value.Identifier if event_type is not None else "?"
        shown = " ".join(
            f"{f}={fields[f].Value}" for f in EVENT_FIELDS if f in fields
        )
        say(f"EVENT {name} {shown}")


async def connect(args):
    client = Client(args.url, timeout=10)
    client.application_uri = "urn:kubevision:test-line-client"
    cert, key = await client.setup_self_signed_certificate(
        Path(args.dir) / "key.pem", Path(args.dir) / "cert.der", host_name="localhost"
    )
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
    )
    if args.user:
        client.set_user(args.user)
        client.set_password(args.password)
    return client, cert


async def subscribe(client):
    ns = await client.get_namespace_index(NAMESPACE)
    sub = await client.create_subscription(20, Handler())
    nodes = [client.get_node(f"ns={ns};s=KubeVision.Session.{v}") for v in WATCHED]
    await sub.subscribe_data_change(nodes)
    # Session is the event notifier (the Server object also relays them);
    # data and events on one subscription.
    session = client.get_node(f"ns={ns};s=KubeVision.Session")
    await sub.subscribe_events(session, evfilter=await session_event_filter(client, ns))
    return ns


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)

    client, cert = await connect(args)
    say(f"CERT {cert}")
    connected, ns = False, None
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line in ("", "quit"):
            break
        if line == "connect":
            if connected:
                continue
            try:
                await client.connect()
            except Exception as e:  # noqa: BLE001 - reported to the test
                say(f"REFUSED {type(e).__name__}: {e}")
                client, _ = await connect(args)
                continue
            connected = True
            ns = await subscribe(client)
            say(f"CONNECTED ns={ns}")
        elif line == "signout":
            try:
                session = client.get_node(ua.NodeId("KubeVision.Session", ns))
                await session.call_method(ua.NodeId("KubeVision.Session.SignOut", ns))
                say("CALLED SignOut")
            except Exception as e:  # noqa: BLE001
                say(f"CALL_FAILED {e}")
    if connected:
        await client.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
