"""The kiosk's OPC UA server (issue 14) seen by an independent client, Python
asyncua: browse and read, a subscription that sees a sign-in, the SignedIn
and SignedOut events, the SignOut() method with and without credentials, the
offered security endpoints and the host name they advertise, rejected client
certificates trusted through the kiosk, the signed-out state reaching a
subscriber when the kiosk closes, and garbage on the socket.

The server is the kubevision-opcua example `line_server` (built by
scripts/test with `cargo build -p kubevision-opcua --examples`), which plays
the kiosk's part through stdin/stdout. With KUBEVISION_LINE_SERVER_EXE set
to its Windows build, the same tests run against it under Wine (scripts/test's
phase "windows: OPC UA server under Wine")."""

import asyncio
import contextlib
import hashlib
import os
import queue
import random
import socket
import struct
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asyncua import Client, ua

from line_events import session_event_filter

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "examples" / "line_server"
# The Windows build of the same server (x86_64-pc-windows-gnu), run under
# Wine: scripts/test's Windows phase sets it, so that these tests talk to the
# kiosk's OPC UA server as it runs on a Windows line PC.
WINDOWS_EXE = os.environ.get("KUBEVISION_LINE_SERVER_EXE")


def server_command():
    if WINDOWS_EXE:
        exe = Path(WINDOWS_EXE).resolve()
        assert exe.exists(), f"{exe} is missing: cargo build --target x86_64-pc-windows-gnu -p kubevision-opcua --example line_server"
        return [str(REPO / "scripts" / "wine-run"), str(exe)]
    assert BINARY.exists(), f"{BINARY} is missing: run `cargo build -p kubevision-opcua --examples` first"
    return [str(BINARY)]
NAMESPACE = "urn:kubevision:line"
USER, PASSWORD = "operator", "s3cret-line"
SESSION_VARS = ["SignedIn", "PersonnelNumber", "DisplayName", "Role", "AccessLevel", "SignedInAt", "Factors", "ExpiresAt"]


class LineServer:
    """The example process; its stdout lines arrive on a queue."""

    def __init__(self, tmp_path, allow_none=True, args=(), umask=-1):
        self.pki = tmp_path / "pki"
        self.process = subprocess.Popen(
            server_command() + ["--port", "0", "--pki-dir", str(self.pki), "--user", f"{USER}:{PASSWORD}"]
            + (["--allow-none"] if allow_none else [])
            + list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / "server.log", "w"),
            text=True,
            umask=umask,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.expect("READY", timeout=30)
        fields = dict(kv.split("=", 1) for kv in ready.split()[1:])
        self.port, self.ns = int(fields["port"]), int(fields["ns"])
        self.advertised_url = fields["url"]
        self.url = f"opc.tcp://127.0.0.1:{self.port}/"

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {prefix!r} line from line_server within {timeout} s"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line

    def send(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def rejected(self):
        """{file name: thumbprint} of the certificates in rejected/, as the kiosk's screen lists them."""
        self.send("rejected")
        listed = {}
        while (line := self.expect("REJECTED")) != "REJECTED_END":
            assert not line.startswith("REJECTED_FAILED"), line
            name, thumbprint = line.removeprefix("REJECTED ").rsplit(" ", 1)
            listed[name] = thumbprint
        return listed

    def stop(self):
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(tmp_path):
    s = LineServer(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def session_node(client, ns, name):
    return client.get_node(f"ns={ns};s=KubeVision.Session.{name}")


async def eventually(node, value, timeout=5):
    """Reads `node` until it holds `value`."""
    node = await node
    deadline = time.monotonic() + timeout
    while (current := await node.read_value()) != value:
        assert time.monotonic() < deadline, f"{node} is {current!r}, expected {value!r}"
        await asyncio.sleep(0.02)


def test_browse_and_read_the_initial_state(server):
    async def check():
        async with Client(server.url) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            assert ns == server.ns
            root = await client.nodes.objects.get_child([f"{ns}:KubeVision"])
            children = {(await c.read_browse_name()).Name for c in await root.get_children()}
            assert children == {"Line", "Session"}

            line = await root.get_child([f"{ns}:Line"])
            assert await (await line.get_child([f"{ns}:LineId"])).read_value() == "L7"
            assert await (await line.get_child([f"{ns}:KioskName"])).read_value() == "kiosk-7a"
            # The stable string NodeIds integrators configure are the same nodes.
            assert await client.get_node(f"ns={ns};s=KubeVision.Line.LineId").read_value() == "L7"

            session = await root.get_child([f"{ns}:Session"])
            names = {(await c.read_browse_name()).Name for c in await session.get_children()}
            assert names == set(SESSION_VARS) | {"SignOut"}

            # Truth after a (re)start: nobody is signed in.
            assert await (await session_node(client, ns, "SignedIn")).read_value() is False
            level = await (await session_node(client, ns, "AccessLevel")).read_data_value()
            assert level.Value.Value == 0 and level.Value.VariantType == ua.VariantType.UInt16
            assert await (await session_node(client, ns, "PersonnelNumber")).read_value() == ""
            signed_in_at = await (await session_node(client, ns, "SignedInAt")).read_data_value()
            assert signed_in_at.Value.VariantType == ua.VariantType.DateTime
            # Read-only for clients: the kiosk is the only writer.
            with pytest.raises(ua.UaStatusCodeError):
                await (await session_node(client, ns, "AccessLevel")).write_value(ua.Variant(9, ua.VariantType.UInt16))

    run(check())


class Changes:
    """The latest value each subscribed node reported."""

    def __init__(self):
        self.latest = {}
        self.changed = asyncio.Event()

    def datachange_notification(self, node, val, data):
        self.latest[node.nodeid.Identifier] = val
        self.changed.set()

    async def wait_for(self, identifier, value, timeout=10):
        async def loop():
            while self.latest.get(identifier) != value:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


def test_subscriber_sees_sign_in_and_sign_out(server):
    async def check():
        async with Client(server.url) as client:
            ns = server.ns
            changes = Changes()
            sub = await client.create_subscription(50, changes)
            level = await session_node(client, ns, "AccessLevel")
            signed_in = await session_node(client, ns, "SignedIn")
            await sub.subscribe_data_change([level, signed_in])
            await changes.wait_for("KubeVision.Session.AccessLevel", 0)

            before = datetime.now(timezone.utc)
            server.send("sign_in 5")
            server.expect("PUBLISHED signed_in")
            await changes.wait_for("KubeVision.Session.AccessLevel", 5)
            await changes.wait_for("KubeVision.Session.SignedIn", True)

            assert await (await session_node(client, ns, "PersonnelNumber")).read_value() == "P-1042"
            assert await (await session_node(client, ns, "DisplayName")).read_value() == "Ada Lovelace"
            assert await (await session_node(client, ns, "Role")).read_value() == "shift lead"
            assert await (await session_node(client, ns, "Factors")).read_value() == "face+pin"
            at = await (await session_node(client, ns, "SignedInAt")).read_value()
            at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
            assert before - timedelta(seconds=2) <= at <= datetime.now(timezone.utc) + timedelta(seconds=2)
            expires = await (await session_node(client, ns, "ExpiresAt")).read_value()
            expires = expires.replace(tzinfo=timezone.utc) if expires.tzinfo is None else expires
            assert timedelta(seconds=899) <= expires - at <= timedelta(seconds=901)

            server.send("sign_out")
            server.expect("PUBLISHED signed_out")
            await changes.wait_for("KubeVision.Session.AccessLevel", 0)
            await changes.wait_for("KubeVision.Session.SignedIn", False)
            assert await (await session_node(client, ns, "PersonnelNumber")).read_value() == ""
            await sub.delete()

    run(check())


def test_sign_out_needs_a_user_and_reaches_the_owner(server, tmp_path):
    async def check():
        server.send("sign_in 3")
        server.expect("PUBLISHED signed_in")
        ns = server.ns
        sign_out = ua.NodeId("KubeVision.Session.SignOut", ns)

        # Anonymous clients read but may not sign anyone out.
        async with Client(server.url) as client:
            session = client.get_node(ua.NodeId("KubeVision.Session", ns))
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await session.call_method(sign_out)
            assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
            assert await (await session_node(client, ns, "SignedIn")).read_value() is True

        # User names and passwords are only taken on SignAndEncrypt endpoints.
        plain = Client(server.url)
        plain.set_user(USER)
        plain.set_password(PASSWORD)
        with pytest.raises(Exception):
            await plain.connect()
        await plain.disconnect()

        # Wrong credentials, or an unknown user, do not even get a session,
        # and the answer does not say which of the two it was.
        for user, password in [(USER, "wrong"), ("nobody", PASSWORD)]:
            wrong = await secure_client(server, tmp_path, user=user, password=password)
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await wrong.connect()
            assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
            await wrong.disconnect()

        client = await secure_client(server, tmp_path, user=USER, password=PASSWORD)
        async with client:
            session = client.get_node(ua.NodeId("KubeVision.Session", ns))
            await session.call_method(sign_out)
            # The kiosk learns who asked, for its audit row.
            assert server.expect("SIGN_OUT_REQUESTED") == f"SIGN_OUT_REQUESTED user={USER}"
            # The owner (here the example, later the kiosk) signs out and
            # publishes; the server applies a published state on its own thread.
            server.expect("PUBLISHED signed_out")
            await eventually(session_node(client, ns, "SignedIn"), False)
            assert await (await session_node(client, ns, "AccessLevel")).read_value() == 0

    run(check())


def test_offers_secure_endpoints_with_a_self_signed_certificate(server):
    async def check():
        async with Client(server.url) as client:
            endpoints = await client.get_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        for policy in ["Basic256Sha256", "Aes128_Sha256_RsaOaep"]:
            assert (policy, ua.MessageSecurityMode.Sign) in offered
            assert (policy, ua.MessageSecurityMode.SignAndEncrypt) in offered
        assert ("None", ua.MessageSecurityMode.None_) in offered  # enabled by --allow-none
        for e in endpoints:
            tokens = {t.TokenType for t in e.UserIdentityTokens}
            assert ua.UserTokenType.Anonymous in tokens
            # A password never travels on a channel that is not encrypted.
            assert (ua.UserTokenType.UserName in tokens) == (e.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt)
        certificate = endpoints[0].ServerCertificate
        assert certificate, "the server has no application certificate"
        assert (server.pki / "own" / "cert.der").read_bytes() == certificate

    run(check())


def garbage():
    """Random bytes, and OPC UA headers that lie or stop short."""
    rng = random.Random(14)
    yield bytes(rng.getrandbits(8) for _ in range(4096))
    yield b"HELF"  # a header with no size
    yield b"HELF" + struct.pack("<I", 0xFFFFFFF0) + b"\x00" * 8  # claims 4 GiB
    yield b"HELF" + struct.pack("<I", 32) + b"\x00" * 4  # truncated hello
    yield b"HELF" + struct.pack("<I", 8)  # shorter than its own header
    yield b"OPNF" + struct.pack("<I", 64) + bytes(rng.getrandbits(8) for _ in range(56))  # open before hello
    yield b"MSGF" + struct.pack("<I", 24) + b"\xff" * 16  # a message on no channel
    for _ in range(20):
        yield bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))


def test_garbage_on_the_socket_leaves_the_server_answering(server):
    for payload in garbage():
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(0.5)
                s.recv(1024)  # an ERR message or a close; either is fine
            except OSError:
                pass
    assert server.process.poll() is None, "line_server died"

    async def check():
        async with Client(server.url) as client:
            assert await (await session_node(client, server.ns, "SignedIn")).read_value() is False

    run(check())


async def client_with_certificate(server, tmp_path, policy):
    """A client with a self-signed application certificate (made once per test)."""
    client = Client(server.url)
    client.application_uri = "urn:kubevision:test-client"
    cert, key = await client.setup_self_signed_certificate(
        tmp_path / "client" / "key.pem", tmp_path / "client" / "cert.der", host_name="localhost"
    )
    await client.set_security(policy, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt)
    return client


async def secure_client(server, tmp_path, user, password):
    """A Basic256Sha256 SignAndEncrypt client whose certificate the server trusts."""
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    trusted = server.pki / "trusted"
    if not any(trusted.glob("*.der")):
        # As an administrator would: the first attempt is refused and leaves
        # the certificate in rejected/ (named by the server), which is moved.
        first = await client_with_certificate(server, tmp_path, SecurityPolicyBasic256Sha256)
        with pytest.raises(Exception):
            await first.connect()
        await first.disconnect()
        trusted.mkdir(parents=True, exist_ok=True)
        for cert in (server.pki / "rejected").glob("*.der"):
            cert.rename(trusted / cert.name)
    client = await client_with_certificate(server, tmp_path, SecurityPolicyBasic256Sha256)
    client.set_user(user)
    client.set_password(password)
    return client


def test_sign_and_encrypt_needs_a_trusted_client_certificate(server, tmp_path):
    from asyncua.crypto.security_policies import SecurityPolicyAes128Sha256RsaOaep, SecurityPolicyBasic256Sha256

    async def read_signed_in(policy):
        async with await client_with_certificate(server, tmp_path, policy) as client:
            return await (await session_node(client, server.ns, "SignedIn")).read_value()

    # Unknown to the server: refused, and kept in rejected/ for an administrator.
    with pytest.raises(Exception):
        run(read_signed_in(SecurityPolicyBasic256Sha256))
    rejected = list((server.pki / "rejected").glob("*.der"))
    assert len(rejected) == 1, f"expected the client certificate in rejected/, found {rejected}"
    assert rejected[0].read_bytes() == (tmp_path / "client" / "cert.der").read_bytes()

    # Trusted by moving it to trusted/ (what the admin screen will do): both policies work.
    (server.pki / "trusted").mkdir(exist_ok=True)
    rejected[0].rename(server.pki / "trusted" / rejected[0].name)
    assert run(read_signed_in(SecurityPolicyBasic256Sha256)) is False
    assert run(read_signed_in(SecurityPolicyAes128Sha256RsaOaep)) is False


def test_no_unsecured_endpoint_unless_enabled(tmp_path):
    server = LineServer(tmp_path, allow_none=False)
    try:

        async def check():
            client = Client(server.url)
            endpoints = await client.connect_and_get_server_endpoints()
            assert endpoints and all(e.SecurityMode != ua.MessageSecurityMode.None_ for e in endpoints)
            with pytest.raises(Exception):
                async with Client(server.url) as unsecured:
                    await (await session_node(unsecured, server.ns, "SignedIn")).read_value()

        run(check())
    finally:
        server.stop()


EVENT_FIELDS = ["PersonnelNumber", "DisplayName", "Role", "AccessLevel", "SignedInAt", "Factors", "ExpiresAt"]


class Events:
    """Every event a subscription delivered, in order."""

    def __init__(self):
        self.received = []
        self.arrived = asyncio.Event()

    def event_notification(self, event):
        self.received.append(event)
        self.arrived.set()

    def datachange_notification(self, node, val, data):
        # async-opcua sends every new event item one data change with
        # BadWaitingForInitialData; there is nothing in it.
        pass

    async def wait_for_count(self, count, timeout=10):
        async def loop():
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(loop(), timeout)


def utc(dt):
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def test_sign_in_and_sign_out_raise_events(server):
    async def check():
        async with Client(server.url) as client:
            ns = server.ns
            signed_in_type = client.get_node(ua.NodeId("KubeVision.SignedInEventType", ns))
            signed_out_type = client.get_node(ua.NodeId("KubeVision.SignedOutEventType", ns))
            # The types are BaseEventType's, with the session fields as
            # properties, and nothing biometric among them.
            for event_type in [signed_in_type, signed_out_type]:
                assert (await event_type.get_parent()).nodeid == ua.NodeId(ua.ObjectIds.BaseEventType)
                props = {(await p.read_browse_name()).Name for p in await event_type.get_properties()}
                assert props == set(EVENT_FIELDS)
            level_type = await client.get_node(ua.NodeId("KubeVision.SignedInEventType.AccessLevel", ns)).read_data_type()
            assert level_type == ua.NodeId(ua.ObjectIds.UInt16)

            session = client.get_node(ua.NodeId("KubeVision.Session", ns))
            assert await session.read_event_notifier() == {ua.EventNotifier.SubscribeToEvents}

            # Subscribed at the Session object and, separately, at the Server
            # object (what most HMIs do): both see every event.
            at_session, at_server = Events(), Events()
            sub_session = await client.create_subscription(50, at_session)
            await sub_session.subscribe_events(session, evfilter=await session_event_filter(client, ns))
            sub_server = await client.create_subscription(50, at_server)
            await sub_server.subscribe_events(ua.ObjectIds.Server, evfilter=await session_event_filter(client, ns))

            before = datetime.now(timezone.utc)
            server.send("sign_in 4")
            server.expect("PUBLISHED signed_in")
            await at_session.wait_for_count(1)
            await at_server.wait_for_count(1)
            signed_in = at_session.received[0]
            assert signed_in.EventType == signed_in_type.nodeid
            assert signed_in.SourceNode == session.nodeid
            assert signed_in.PersonnelNumber == "P-1042"
            assert signed_in.DisplayName == "Ada Lovelace"
            assert signed_in.Role == "shift lead"
            assert signed_in.AccessLevel == 4
            assert signed_in.Factors == "face+pin"
            at = utc(signed_in.SignedInAt)
            assert before - timedelta(seconds=2) <= at <= datetime.now(timezone.utc) + timedelta(seconds=2)
            assert utc(signed_in.ExpiresAt) - at == timedelta(seconds=900)
            assert signed_in.Message.Text == "P-1042 signed in (access level 4)"
            assert 1 <= signed_in.Severity <= 1000
            assert at_server.received[0].EventId == signed_in.EventId

            # Publishing the same session again is no new sign-in.
            server.send("sign_out")
            server.expect("PUBLISHED signed_out")
            await at_session.wait_for_count(2)
            await at_server.wait_for_count(2)
            signed_out = at_session.received[1]
            assert signed_out.EventType == signed_out_type.nodeid
            # The fields of the session that ended.
            assert signed_out.PersonnelNumber == "P-1042"
            assert signed_out.AccessLevel == 4
            assert utc(signed_out.SignedInAt) == at
            assert signed_out.Message.Text == "P-1042 signed out"
            assert signed_out.EventId != signed_in.EventId
            await asyncio.sleep(0.3)
            assert len(at_session.received) == len(at_server.received) == 2
            # The variables say the same: nobody.
            assert await (await session_node(client, ns, "SignedIn")).read_value() is False

    run(check())


def test_closing_the_kiosk_tells_subscribers_first(server):
    """`quit` drops the Handle: the subscriber hears SignedIn=false and a
    SignedOut event before its connection goes."""

    async def check():
        client = Client(server.url)
        await client.connect()
        try:
            ns = server.ns
            changes, events = Changes(), Events()
            # A slow publishing interval, as an HMI may use: the close has to
            # wait for the next publish, not just write the value.
            sub = await client.create_subscription(300, changes)
            await sub.subscribe_data_change([await session_node(client, ns, "SignedIn")])
            event_sub = await client.create_subscription(300, events)
            await event_sub.subscribe_events(ua.ObjectIds.Server, evfilter=await session_event_filter(client, ns))
            server.send("sign_in 3")
            await changes.wait_for("KubeVision.Session.SignedIn", True)

            server.send("quit")
            # Waited for in a thread: the client's event loop must keep
            # running (and sending Publish requests) while the kiosk closes.
            await asyncio.to_thread(server.expect, "STOPPED", 10)
            assert await asyncio.to_thread(server.process.wait, 10) == 0
            # Whatever arrived, arrived while the connection was up.
            assert changes.latest["KubeVision.Session.SignedIn"] is False
            signed_out = ua.NodeId("KubeVision.SignedOutEventType", ns)
            assert [(e.EventType == signed_out, e.PersonnelNumber) for e in events.received[-1:]] == [(True, "P-1042")]
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)

    run(check())


def test_a_rejected_certificate_trusted_on_the_kiosk_may_sign_out(server, tmp_path):
    """The administrator's path: a client is refused, its certificate shows
    in the kiosk's list with the thumbprint a client tool shows, the kiosk
    trusts it, and the same client then connects with a user name and calls
    SignOut() - without a server restart."""
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    async def check():
        ns = server.ns
        client = await client_with_certificate(server, tmp_path, SecurityPolicyBasic256Sha256)
        client.set_user(USER)
        client.set_password(PASSWORD)
        with pytest.raises(Exception):
            await client.connect()
        with contextlib.suppress(Exception):
            await client.disconnect()

        der = (tmp_path / "client" / "cert.der").read_bytes()
        listed = server.rejected()
        assert list(listed.values()) == [hashlib.sha1(der).hexdigest()]
        (name,) = listed
        assert (server.pki / "rejected" / name).read_bytes() == der

        # Names that would leave rejected/ are refused, nothing moves.
        server.send("trust ../own/cert.der")
        assert server.expect("TRUST").startswith("TRUST_FAILED")
        server.send(f"trust {name}")
        assert server.expect("TRUST") == f"TRUSTED {name}"
        assert server.rejected() == {}

        server.send("sign_in 2")
        server.expect("PUBLISHED signed_in")
        client = await client_with_certificate(server, tmp_path, SecurityPolicyBasic256Sha256)
        client.set_user(USER)
        client.set_password(PASSWORD)
        async with client:
            await client.get_node(ua.NodeId("KubeVision.Session", ns)).call_method(
                ua.NodeId("KubeVision.Session.SignOut", ns)
            )
            assert server.expect("SIGN_OUT_REQUESTED") == f"SIGN_OUT_REQUESTED user={USER}"
            await eventually(session_node(client, ns, "SignedIn"), False)

    run(check())


def test_bound_to_every_interface_it_advertises_the_host_name(tmp_path):
    server = LineServer(tmp_path, args=["--host", "0.0.0.0"])
    try:

        async def check():
            async with Client(server.url) as client:
                return await client.get_endpoints()

        endpoints = run(check())
        expected = f"opc.tcp://{socket.gethostname()}:{server.port}/"
        assert server.advertised_url == expected
        for e in endpoints:
            assert "0.0.0.0" not in e.EndpointUrl
            assert e.EndpointUrl == expected
            assert e.Server.DiscoveryUrls == [expected]
    finally:
        server.stop()


def test_an_advertised_host_is_what_clients_are_told(tmp_path):
    server = LineServer(tmp_path, args=["--host", "0.0.0.0", "--advertised-host", "kiosk-7a.line.example"])
    try:

        async def check():
            async with Client(server.url) as client:
                return await client.get_endpoints()

        expected = f"opc.tcp://kiosk-7a.line.example:{server.port}/"
        assert {e.EndpointUrl for e in run(check())} == {expected}
    finally:
        server.stop()


class Everything:
    """Every data change and every event of one subscription, in arrival order."""

    def __init__(self):
        self.data = {}
        self.events = []
        self.arrived = asyncio.Event()

    def datachange_notification(self, node, val, data):
        # The event item's one "waiting for initial data" change is no data.
        if node.nodeid.Identifier != "KubeVision.Session":
            self.data.setdefault(node.nodeid.Identifier.removeprefix("KubeVision.Session."), []).append(val)
            self.arrived.set()

    def event_notification(self, event):
        self.events.append((event.EventType.Identifier.removeprefix("KubeVision."), event.AccessLevel))
        self.arrived.set()

    async def until(self, done, what, timeout=5):
        async def loop():
            while not done():
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s: data {self.data}, events {self.events}") from None


WATCHED = ["SignedIn", "PersonnelNumber", "Role", "AccessLevel", "Factors"]


def test_one_subscription_with_data_and_events_gets_every_change(server, tmp_path):
    """What an HMI often does: ONE subscription (20 ms) holds the Session
    variables and the event item. Every sign-in and sign-out reaches it as
    data changes and as events: one after the other, a new sign-in that
    replaces the session (two events from one published state), a SignOut()
    call, and a sign-in and sign-out published back to back (the second
    change well inside the sampling interval a client may ask for)."""
    sign_out = ua.NodeId("KubeVision.Session.SignOut", server.ns)

    async def check():
        ns = server.ns
        client = await secure_client(server, tmp_path, user=USER, password=PASSWORD)
        async with client:
            seen = Everything()
            sub = await client.create_subscription(20, seen)
            nodes = [await session_node(client, ns, v) for v in WATCHED]
            # 250 ms is what many HMIs ask for; 0 is asyncua's default.
            await sub.subscribe_data_change(nodes[:3], sampling_interval=250)
            await sub.subscribe_data_change(nodes[3:])
            session = client.get_node(ua.NodeId("KubeVision.Session", ns))
            await sub.subscribe_events(session, evfilter=await session_event_filter(client, ns))
            await seen.until(lambda: all(seen.data.get(v) for v in WATCHED), "initial values")

            levels, signed_in, events = [0], [False], []

            async def step(command, level, expected_events):
                if command == "SignOut()":
                    await session.call_method(sign_out)
                    assert server.expect("SIGN_OUT_REQUESTED") == f"SIGN_OUT_REQUESTED user={USER}"
                else:
                    server.send(command)
                server.expect("PUBLISHED")
                if level != levels[-1]:
                    levels.append(level)
                if (level > 0) != signed_in[-1]:
                    signed_in.append(level > 0)
                events.extend(expected_events)
                await seen.until(
                    lambda: seen.data["AccessLevel"] == levels
                    and seen.data["SignedIn"] == signed_in
                    and seen.events == events,
                    f"data and events after {command!r}",
                )

            await step("sign_in 5", 5, [("SignedInEventType", 5)])
            await step("sign_out", 0, [("SignedOutEventType", 5)])
            await step("sign_in 3", 3, [("SignedInEventType", 3)])
            # A new sign-in ends the running session: two events at once.
            await step("sign_in 7", 7, [("SignedOutEventType", 3), ("SignedInEventType", 7)])
            await step("SignOut()", 0, [("SignedOutEventType", 7)])
            await step("sign_in 2", 2, [("SignedInEventType", 2)])
            await step("sign_out", 0, [("SignedOutEventType", 2)])
            assert seen.data["PersonnelNumber"] == ["", "P-1042", "", "P-1042", "", "P-1042", ""]
            assert seen.data["Role"] == ["", "shift lead", "", "shift lead", "", "shift lead", ""]

            # Back to back: the line may see the level of the short session or
            # not (variables are the current state), but it must end up signed
            # out, and hear both events (the history).
            server.send("sign_in 4")
            server.send("sign_out")
            server.expect("PUBLISHED")
            server.expect("PUBLISHED")
            events += [("SignedInEventType", 4), ("SignedOutEventType", 4)]
            await seen.until(
                lambda: seen.data["AccessLevel"][-1] == 0
                and seen.data["SignedIn"][-1] is False
                and seen.data["PersonnelNumber"][-1] == ""
                and seen.events == events,
                "the signed-out state after a sign-in and sign-out back to back",
            )
            await asyncio.sleep(0.3)
            assert seen.data["AccessLevel"][-1] == 0 and seen.data["SignedIn"][-1] is False
            assert seen.events == events

    run(check())
