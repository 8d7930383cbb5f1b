"""The NodeSet2 file of the line namespace (opcua/nodeset/KubeVision.NodeSet2.xml,
issue 14) checked against the running server: every node in the file exists
with the same attributes and references, and the server has no node under
KubeVision, and no event type, that the file leaves out.

The server is the same `line_server` example test_opcua_line.py starts."""

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from asyncua import Client, Server, ua

from test_opcua_line import NAMESPACE, LineServer, run

REPO = Path(__file__).resolve().parents[2]
NODESET = REPO / "opcua" / "nodeset" / "KubeVision.NodeSet2.xml"
UA = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
NODE_CLASSES = {
    "UAObject": ua.NodeClass.Object,
    "UAObjectType": ua.NodeClass.ObjectType,
    "UAVariable": ua.NodeClass.Variable,
    "UAMethod": ua.NodeClass.Method,
}
# Per the UANodeSet schema, the value an attribute has when it is left out.
VARIABLE_DEFAULTS = {"DataType": "i=24", "ValueRank": "-1", "AccessLevel": "1", "UserAccessLevel": "1", "Historizing": "false"}


class NodeSet:
    """The parsed file, with its NodeIds rewritten into a server's namespace indexes."""

    def __init__(self, path=NODESET):
        self.root = ET.parse(path).getroot()
        assert self.root.tag == f"{UA}UANodeSet"
        self.uris = [u.text for u in self.root.find(f"{UA}NamespaceUris")]
        self.aliases = {a.get("Alias"): a.text.strip() for a in self.root.iter(f"{UA}Alias")}
        self.elements = [e for e in self.root if e.tag.removeprefix(UA) in NODE_CLASSES]
        unknown = [e.tag for e in self.root if e.tag.startswith(f"{UA}UA") and e.tag.removeprefix(UA) not in NODE_CLASSES]
        assert not unknown, f"node classes this test does not check: {unknown}"

    def node_id(self, text, ns_map):
        """A NodeId of the file (alias, or ns=<file index>) in the server's indexes."""
        node_id = ua.NodeId.from_string(self.aliases.get(text.strip(), text.strip()))
        if node_id.NamespaceIndex:
            node_id = ua.NodeId(node_id.Identifier, ns_map[node_id.NamespaceIndex], node_id.NodeIdType)
        return node_id

    def qualified_name(self, text, ns_map):
        ns, _, name = text.rpartition(":")
        return ua.QualifiedName(name, ns_map[int(ns)] if ns else 0)

    def nodes(self, ns_map):
        """{NodeId: description} of every node in the file."""
        nodes = {}
        for e in self.elements:
            node_id = self.node_id(e.get("NodeId"), ns_map)
            assert node_id not in nodes, f"{node_id} is in the file twice"
            refs = {
                (self.node_id(r.get("ReferenceType"), ns_map), r.get("IsForward", "true") == "true", self.node_id(r.text, ns_map))
                for r in e.iter(f"{UA}Reference")
            }
            nodes[node_id] = {
                "element": e,
                "class": NODE_CLASSES[e.tag.removeprefix(UA)],
                "browse_name": self.qualified_name(e.get("BrowseName"), ns_map),
                "display_name": e.find(f"{UA}DisplayName").text,
                "parent": e.get("ParentNodeId") and self.node_id(e.get("ParentNodeId"), ns_map),
                "references": refs,
            }
        return nodes


def file_ns_map(uris):
    """The file's own indexes: 0 the base namespace, 1.. its NamespaceUris."""
    return {i: i for i in range(len(uris) + 1)}


def test_nodeset_is_self_consistent():
    nodeset = NodeSet()
    assert nodeset.uris == [NAMESPACE]
    models = nodeset.root.find(f"{UA}Models")
    assert [m.get("ModelUri") for m in models] == [NAMESPACE]
    ns_map = file_ns_map(nodeset.uris)
    nodes = nodeset.nodes(ns_map)
    # A node's parent: the object it is a component of, or the type it is a property of.
    parent_refs = {ua.NodeId(ua.ObjectIds.HasComponent), ua.NodeId(ua.ObjectIds.HasProperty)}
    for node_id, node in nodes.items():
        # Stable string NodeIds that spell the browse path, in our namespace.
        assert node_id.NamespaceIndex == 1 and node_id.NodeIdType == ua.NodeIdType.String
        assert node_id.Identifier.split(".")[-1] == node["browse_name"].Name == node["display_name"]
        assert node["browse_name"].NamespaceIndex == 1
        # Every reference between two nodes of the file is stated from both ends.
        for ref_type, forward, target in node["references"]:
            if target in nodes:
                assert (ref_type, not forward, node_id) in nodes[target]["references"], (node_id, ref_type, target)
        # ParentNodeId names the HasComponent / HasProperty parent, and the parent is in the path.
        parents = {t for r, f, t in node["references"] if r in parent_refs and not f}
        if node["parent"] is not None:
            assert parents == {node["parent"]}
            assert node_id.Identifier.rpartition(".")[0] == node["parent"].Identifier
    # The event types: subtypes of BaseEventType whose properties are the
    # Session variables but SignedIn, with the same data types, each
    # Mandatory (so every event carries it).
    event_types = [n for n in nodes.values() if n["class"] == ua.NodeClass.ObjectType]
    assert sorted(t["browse_name"].Name for t in event_types) == ["SignedInEventType", "SignedOutEventType"]
    session_vars = {
        n["browse_name"].Name: n["element"].get("DataType")
        for n in nodes.values()
        if n["parent"] == ua.NodeId("KubeVision.Session", 1) and n["class"] == ua.NodeClass.Variable
    }
    for t in event_types:
        node_id = nodeset.node_id(t["element"].get("NodeId"), ns_map)
        assert (ua.NodeId(ua.ObjectIds.HasSubtype), False, ua.NodeId(ua.ObjectIds.BaseEventType)) in t["references"]
        props = {n["browse_name"].Name: n for n in nodes.values() if n["parent"] == node_id}
        assert {k: p["element"].get("DataType") for k, p in props.items()} == {
            k: v for k, v in session_vars.items() if k != "SignedIn"
        }
        for p in props.values():
            assert (ua.NodeId(ua.ObjectIds.HasTypeDefinition), True, ua.NodeId(ua.ObjectIds.PropertyType)) in p["references"]
            assert (ua.NodeId(ua.ObjectIds.HasModellingRule), True, ua.NodeId(ua.ObjectIds.ModellingRule_Mandatory)) in p["references"]
    # No method arguments are declared: no ArgumentDescription and no property nodes.
    for node in nodes.values():
        if node["class"] == ua.NodeClass.Method:
            assert node["element"].find(f"{UA}ArgumentDescription") is None
            assert not [t for r, f, t in node["references"] if r == ua.NodeId(ua.ObjectIds.HasProperty) and f]


def test_nodeset_imports_into_another_stack():
    """What a modelling tool does with the file: asyncua's own importer takes it."""

    async def check():
        server = Server()
        await server.init()
        imported = await server.import_xml(str(NODESET))
        ns = await server.get_namespace_index(NAMESPACE)
        expected = NodeSet().nodes({0: 0, 1: ns})
        assert set(imported) == set(expected)
        root = await server.nodes.objects.get_child([f"{ns}:KubeVision"])
        level = await root.get_child([f"{ns}:Session", f"{ns}:AccessLevel"])
        assert level.nodeid == ua.NodeId("KubeVision.Session.AccessLevel", ns)
        assert await level.read_data_type() == ua.NodeId(ua.ObjectIds.UInt16)

    run(check())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LineServer(tmp_path_factory.mktemp("nodeset"))
    try:
        yield s
    finally:
        s.stop()


async def read(node, attribute):
    return (await node.read_attribute(attribute)).Value.Value


async def server_references(node):
    refs = await node.get_references(ua.ObjectIds.References, ua.BrowseDirection.Both, includesubtypes=True)
    return {(r.ReferenceTypeId, r.IsForward, r.NodeId) for r in refs}


def test_namespace_uri_matches(server):
    async def check():
        async with Client(server.url) as client:
            namespaces = await client.get_namespace_array()
            assert namespaces[server.ns] == NodeSet().uris[0] == NAMESPACE
            assert await client.get_namespace_index(NAMESPACE) == server.ns

    run(check())


def test_every_node_in_the_file_is_on_the_server(server):
    nodes = NodeSet().nodes({0: 0, 1: server.ns})
    A = ua.AttributeIds

    async def check():
        async with Client(server.url) as client:
            for node_id, expected in nodes.items():
                node = client.get_node(node_id)
                e = expected["element"]
                assert await node.read_node_class() == expected["class"], node_id
                assert await node.read_browse_name() == expected["browse_name"], node_id
                assert (await node.read_display_name()).Text == expected["display_name"], node_id
                # The same references, both directions, hierarchical or not:
                # the parent (HasComponent / Organizes), the children and the type.
                assert await server_references(node) == expected["references"], node_id
                if expected["class"] == ua.NodeClass.Variable:
                    attrs = {k: e.get(k, v) for k, v in VARIABLE_DEFAULTS.items()}
                    data_type = NodeSet().node_id(attrs["DataType"], {0: 0, 1: server.ns})
                    assert await read(node, A.DataType) == data_type, node_id
                    assert await read(node, A.ValueRank) == int(attrs["ValueRank"]), node_id
                    assert await read(node, A.AccessLevel) == int(attrs["AccessLevel"]), node_id
                    assert await read(node, A.UserAccessLevel) == int(attrs["UserAccessLevel"]), node_id
                    assert await read(node, A.Historizing) == (attrs["Historizing"] == "true"), node_id
                    # The value really has the declared type (null DateTimes included).
                    value = await node.read_data_value()
                    assert value.Value.VariantType.value == data_type.Identifier, node_id
                if expected["class"] == ua.NodeClass.Object:
                    notifier = await read(node, A.EventNotifier)
                    assert notifier == int(e.get("EventNotifier", "0")), node_id
                if expected["class"] == ua.NodeClass.ObjectType:
                    assert await read(node, A.IsAbstract) == (e.get("IsAbstract", "false") == "true"), node_id
                if expected["class"] == ua.NodeClass.Method:
                    assert await read(node, A.Executable) == (e.get("Executable", "true") == "true"), node_id
                    # UserExecutable is per session: the file states it for a
                    # configured user; this anonymous session may not call it.
                    assert await read(node, A.UserExecutable) is False, node_id

    run(check())


def test_the_server_has_no_node_the_file_leaves_out(server):
    nodes = NodeSet().nodes({0: 0, 1: server.ns})

    async def check():
        async with Client(server.url) as client:
            # Under Objects, KubeVision is our namespace's only node.
            ours = [
                c.nodeid for c in await client.nodes.objects.get_children(ua.ObjectIds.HierarchicalReferences)
                if c.nodeid.NamespaceIndex == server.ns
            ]
            assert ours == [ua.NodeId("KubeVision", server.ns)]
            # Our event types are the only subtypes of BaseEventType in our namespace.
            event_types = [
                c.nodeid for c in await client.get_node(ua.ObjectIds.BaseEventType).get_children(ua.ObjectIds.HasSubtype)
                if c.nodeid.NamespaceIndex == server.ns
            ]
            assert sorted(t.Identifier for t in event_types) == ["KubeVision.SignedInEventType", "KubeVision.SignedOutEventType"]
            # Everything reachable from them (components, properties, anything
            # hierarchical, recursively) is in the file.
            seen, todo = set(), [ours[0], *event_types]
            while todo:
                node_id = todo.pop()
                seen.add(node_id)
                for child in await client.get_node(node_id).get_children(ua.ObjectIds.HierarchicalReferences):
                    if child.nodeid not in seen:
                        todo.append(child.nodeid)
            assert seen == set(nodes), f"on the server only: {seen - set(nodes)}; in the file only: {set(nodes) - seen}"

    run(check())


def test_sign_out_takes_no_arguments(server):
    async def check():
        async with Client(server.url) as client:
            method = client.get_node(ua.NodeId("KubeVision.Session.SignOut", server.ns))
            # Arguments would be InputArguments / OutputArguments properties.
            assert await method.get_properties() == []
            assert await method.get_children() == []
            nodes = NodeSet().nodes({0: 0, 1: server.ns})
            assert nodes[method.nodeid]["element"].find(f"{UA}ArgumentDescription") is None

    run(check())
