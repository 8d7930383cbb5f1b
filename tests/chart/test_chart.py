"""Tests of the Helm chart in chart/, with the real helm binary.

For every value set in tests/chart/values/: `helm lint --strict`, a golden
comparison of `helm template` (UPDATE_GOLDEN=1 rewrites tests/chart/golden/),
validation of every rendered object against the Kubernetes API schemas that
kubernetes-validate bundles (offline), and assertions on what the manifests
must do: GPU scheduling or none, gallery retention, security context, probes,
network policy, TLS and token wiring, the gallery store (SQLite StatefulSet
or PostgreSQL Deployment, the connection string and CA from Secrets, the
CloudNativePG Cluster), identities and the kiosk CA, and the refusal of a
gallery anyone could change without credentials. Every file in tests/chart/refused/ must be refused,
with the words its first line gives. helm comes from .tools/bin (installed by
scripts/setup-test-tools); without it the tests fail rather than skip.
"""

import base64
import difflib
import functools
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
HELM = REPO / ".tools" / "bin" / "helm"
HERE = Path(__file__).resolve().parent
VALUE_SETS = sorted(p.stem for p in (HERE / "values").glob("*.yaml"))
REFUSED_SETS = sorted(p.stem for p in (HERE / "refused").glob("*.yaml"))
RELEASE, NAMESPACE = "kv", "kubevision"
FULLNAME = "kv-kubevision-offload"
# The chart's minimum (Chart.yaml kubeVersion) and the kubectl it ships with.
KUBE_VERSIONS = ("1.27.0", "1.33.0")
GRPC_PORT, METRICS_PORT = 50051, 9090
GPU_SETS = ("defaults", "gpu", "plant", "postgres-cnpg")
CPU_SETS = ("cpu", "persistence", "postgres-secret")
POSTGRES_SETS = ("postgres-cnpg", "postgres-secret")
TLS_SETS = ("gpu", "ingress-tls", "persistence", "plant", "postgres-cnpg")
# The explicit trial opt-in, for renders that are about something else.
TRIAL = "auth.allowUnauthenticated=true"

# kubernetes-validate has no schemas for cert-manager's CRDs. These hand-written
# schemas follow cert-manager.io/v1 closely enough to catch misspelt or missing
# fields in what the chart renders (Issuer: exactly one issuer type;
# Certificate: the spec fields cert-manager defines, with the required ones).
def cert_manager_schema(kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {"name": {"type": "string", "minLength": 1}},
            },
            "spec": {"type": "object", "additionalProperties": False, **spec},
        },
    }


ISSUER_TYPES = ("acme", "ca", "selfSigned", "vault", "venafi")
CERTIFICATE_OPTIONAL_FIELDS = (
    "commonName", "duration", "renewBefore", "privateKey", "usages", "subject", "ipAddresses",
    "uris", "emailAddresses", "isCA", "secretTemplate", "keystores", "revisionHistoryLimit",
)
CERT_MANAGER_SCHEMAS = {
    "Issuer": cert_manager_schema("Issuer", {
        "properties": {t: {"type": "object"} for t in ISSUER_TYPES},
        "oneOf": [{"required": [t]} for t in ISSUER_TYPES],
    }),
    "Certificate": cert_manager_schema("Certificate", {
        "required": ["secretName", "issuerRef"],
        # cert-manager needs a name for the subject: a common name or DNS names.
        "anyOf": [{"required": ["commonName"]}, {"required": ["dnsNames"]}],
        "properties": {
            "secretName": {"type": "string", "minLength": 1},
            "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "issuerRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                    "group": {"const": "cert-manager.io"},
                },
            },
            **{field: {} for field in CERTIFICATE_OPTIONAL_FIELDS},
        },
    }),
}


# Nor for CloudNativePG's Cluster: the fields of postgresql.cnpg.io/v1 the
# chart sets, no others.
CNPG_CLUSTER_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "Cluster"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            # Cluster names become Service names (<name>-rw): DNS-1035 labels.
            "properties": {"name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]{0,48}[a-z0-9])?-db$"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["instances", "storage"],
            "properties": {
                "instances": {"type": "integer", "minimum": 1},
                "bootstrap": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"initdb": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["database", "owner"],
                        "properties": {"database": {"type": "string"}, "owner": {"type": "string"}},
                    }},
                },
                "storage": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["size"],
                    "properties": {"size": {"type": "string"}, "storageClass": {"type": "string"}},
                },
            },
        },
    },
}


def helm(*args: str) -> subprocess.CompletedProcess:
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: run scripts/setup-test-tools")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=False)


def template_args(value_set: str) -> list[str]:
    return ["-f", str(HERE / "values" / f"{value_set}.yaml")]


@functools.cache
def render_text(*args: str) -> str:
    proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(*args: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(render_text(*args)) if doc]


def rendered(value_set: str) -> list[dict]:
    return render(*template_args(value_set))


def only(docs: list[dict], kind: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, got {len(matches)}"
    return matches[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def workload(docs: list[dict]) -> dict:
    """The StatefulSet (SQLite) or the Deployment (PostgreSQL): exactly one of them."""
    (w,) = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    return w


def pod_spec(docs: list[dict]) -> dict:
    return workload(docs)["spec"]["template"]["spec"]


def container(docs: list[dict]) -> dict:
    (c,) = pod_spec(docs)["containers"]
    return c


def env(docs: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(docs)["env"]}


# --- tooling-level checks ---------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(value_set):
    proc = helm("lint", "--strict", str(CHART), *template_args(value_set))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendering_matches_golden(value_set):
    actual = render_text(*template_args(value_set))
    golden = HERE / "golden" / f"{value_set}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(actual)
    expected = golden.read_text() if golden.exists() else ""
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        str(golden), "helm template"))
    assert not diff, f"rendering changed (UPDATE_GOLDEN=1 accepts it):\n{diff}"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_objects_match_api_schemas(value_set, kube_version):
    for doc in rendered(value_set):
        if doc["apiVersion"].startswith("cert-manager.io/"):
            jsonschema.validate(doc, CERT_MANAGER_SCHEMAS[doc["kind"]])
        elif doc["apiVersion"].startswith("postgresql.cnpg.io/"):
            jsonschema.validate(doc, CNPG_CLUSTER_SCHEMA)
        else:
            # strict: unknown fields are errors, as with kubectl's field validation.
            kubernetes_validate.validate(doc, kube_version, strict=True)


def test_value_sets_cover_the_features():
    kinds = {d["kind"] for s in VALUE_SETS for d in rendered(s)}
    assert kinds == {
        "StatefulSet", "Deployment", "Cluster", "Service", "Secret", "Ingress", "Issuer", "Certificate",
        "NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler",
    }


@pytest.mark.parametrize("args, error", [
    (["--set", f"placement.site=premise,{TRIAL}"], "placement.site=premise cannot be combined with gpu.enabled"),
    (["--set", "backend=rocm"], "/backend"),
    (["--set", f"tls.enabled=true,{TRIAL}"], "/tls"),
    (["--set", "tls.enabled=true,tls.cert=c,tls.key=k,tls.mtls=true"], "/tls"),
    (["--set", "tls.mtls=true,tls.existingSecret=s"], "/tls"),
    (["--set", "auth.token=t,auth.existingSecret=s"], "/auth"),
    (["--set", "persistence.sizee=2Gi"], "sizee"),
    (["--set", "ingress.host=Not_A_Host"], "/ingress/host"),
    (["--set", "auth.identities[0].name=k,auth.identities[0].scopes[0]=enroll,"
               "auth.identities[0].tokenSha256=" + "0" * 64], "/auth/identities/0/scopes/0"),
    (["--set", "auth.identities[0].name=k,auth.identities[0].scopes[0]=identify,"
               "auth.identities[0].tokenSha256=plain-token"], "/auth/identities/0/tokenSha256"),
    (["--set", "auth.identities[0].name=k,auth.identities[0].scopes[0]=identify"], "/auth/identities/0"),
    ([*template_args("gpu"), "--set", "ingress.enabled=true"], "ingress.enabled cannot be combined with tls.mtls"),
    # A key id is 16 hex digits: not 4, not with a sign Rust's hex parser would take.
    (["--set", f"auth.plantPepperId=0123,{TRIAL}"], "/auth/plantPepperId"),
    (["--set-string", f"auth.plantPepperId=+123456789abcdef,{TRIAL}"], "/auth/plantPepperId"),
    (["--set-string", f"auth.plantPepperId=0123456789abcdeg,{TRIAL}"], "/auth/plantPepperId"),
])
def test_invalid_values_are_refused(args, error):
    proc = helm("template", RELEASE, str(CHART), *args)
    assert proc.returncode != 0, "rendered although the values are invalid"
    assert error in proc.stderr


def refusal(value_set: str) -> str:
    """The words a refused value set must be refused with: its first line, `# refused: <words>`."""
    first = (HERE / "refused" / f"{value_set}.yaml").read_text().splitlines()[0]
    assert first.startswith("# refused: "), first
    return first.removeprefix("# refused: ")


def test_refused_sets_exist():
    assert len(REFUSED_SETS) >= 6, REFUSED_SETS


@pytest.mark.parametrize("value_set", REFUSED_SETS)
def test_refused_value_sets(value_set):
    args = ["-f", str(HERE / "refused" / f"{value_set}.yaml")]
    # The schema refuses, and its message (a "missing property" named by the
    # reason: helm shows no schema descriptions) says why.
    proc = helm("template", RELEASE, str(CHART), *args)
    assert proc.returncode != 0, "rendered although the values are invalid"
    assert "missing property" in proc.stderr
    assert refusal(value_set) in proc.stderr, proc.stderr
    # Without the schema, the chart's own fail says the same.
    proc = helm("template", RELEASE, str(CHART), "--skip-schema-validation", *args)
    assert proc.returncode != 0, "rendered although the values are invalid"
    assert "execution error" in proc.stderr
    assert refusal(value_set) in proc.stderr, proc.stderr


def test_sqlite_replica_refusal_reads_well():
    proc = helm("template", RELEASE, str(CHART), "--set", "replicaCount=3")
    assert proc.returncode != 0
    assert ("missing property 'gallery.store=postgres for replicaCount > 1 or autoscaling.enabled: "
            "with SQLite every replica would keep a gallery of its own'") in proc.stderr, proc.stderr
    # One replica is fine either way, and so are several with PostgreSQL.
    assert render("--set", f"replicaCount=1,{TRIAL}")
    assert render("--set", f"replicaCount=3,gallery.store=postgres,gallery.postgres.existingSecret=db,{TRIAL}")
    assert render("--set", f"autoscaling.enabled=true,gallery.store=postgres,gallery.postgres.existingSecret=db,{TRIAL}")


def test_values_rancher_injects_are_accepted():
    # Rancher passes global.cattle.* to every chart it installs.
    assert render("--set", f"global.cattle.systemDefaultRegistry=registry.plant.example,{TRIAL}")


def test_rancher_questions_match_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    questions = yaml.safe_load((CHART / "questions.yaml").read_text())["questions"]
    asked = questions + [s for q in questions for s in q.get("subquestions", [])]
    python_type = {"boolean": bool, "int": int}
    for q in asked:
        # The field types Rancher's app form knows (rancher/dashboard, Questions/index.vue).
        assert q["type"] in ("string", "hostname", "multiline", "password", "boolean", "enum", "int",
                             "float", "secret", "storageclass", "pvc", "configmap"), q["variable"]
        value = values
        for key in q["variable"].split("."):
            assert key in value, f"questions.yaml asks for {q['variable']}, which values.yaml lacks"
            value = value[key]
        assert q["default"] == value, q["variable"]
        assert isinstance(value, python_type.get(q["type"], str)), q["variable"]
        assert value in q.get("options", [value]), q["variable"]


# --- what the manifests do --------------------------------------------------


@pytest.mark.parametrize("value_set", GPU_SETS)
def test_gpu_variant_is_scheduled_onto_gpu_nodes(value_set):
    docs = rendered(value_set)
    spec = pod_spec(docs)
    assert spec["nodeSelector"] == {"hardware": "gpu"}
    assert {"key": "hardware", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in spec["tolerations"]
    assert "nvidia.com/gpu" in container(docs)["resources"]["limits"]
    assert container(docs)["image"] == "ghcr.io/kubevision/kubevision-offload:0.1.0-cuda"
    assert env(docs)["KUBEVISION_BACKEND"]["value"] == "cuda"
    assert "affinity" not in spec


def test_gpu_options():
    docs = rendered("gpu")
    spec = pod_spec(docs)
    assert spec["runtimeClassName"] == "nvidia"
    assert container(docs)["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": "2"}
    # Extra tolerations are added to the GPU one, not instead of it.
    assert [t["key"] for t in spec["tolerations"]] == ["hardware", "node.kubernetes.io/unreachable"]
    assert "runtimeClassName" not in pod_spec(rendered("defaults"))


@pytest.mark.parametrize("value_set", CPU_SETS)
def test_cpu_variant_has_no_gpu_scheduling(value_set):
    docs = rendered(value_set)
    spec = pod_spec(docs)
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert "runtimeClassName" not in spec
    assert "nvidia.com/gpu" not in render_text(*template_args(value_set))
    assert container(docs)["image"] == "ghcr.io/kubevision/kubevision-offload:0.1.0"
    assert env(docs)["KUBEVISION_BACKEND"]["value"] == "cpu"


def test_hybrid_placement():
    term = {"matchExpressions": [{"key": "hardware", "operator": "In", "values": ["premise"]}]}
    preferred = pod_spec(rendered("cpu"))["affinity"]["nodeAffinity"]
    assert preferred == {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]}
    required = pod_spec(rendered("persistence"))["affinity"]["nodeAffinity"]
    term["matchExpressions"][0]["values"] = ["cloud"]
    assert required == {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}


def test_gpu_nodes_with_a_separate_site_label():
    docs = render("--set", f"placement.site=premise,placement.labelKey=kubevision.io/site,{TRIAL}")
    spec = pod_spec(docs)
    assert spec["nodeSelector"] == {"hardware": "gpu"}
    (pref,) = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref["preference"]["matchExpressions"][0]["key"] == "kubevision.io/site"


def test_gallery_is_kept_on_uninstall_by_default():
    sts = only(rendered("defaults"), "StatefulSet")["spec"]
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]
    assert all(v["name"] != "data" for v in sts["template"]["spec"]["volumes"])
    data_mount = {m["name"]: m["mountPath"] for m in container(rendered("defaults"))["volumeMounts"]}["data"]
    assert env(rendered("defaults"))["KUBEVISION_DATA_DIR"]["value"] == data_mount


def test_gallery_deleted_on_uninstall_when_not_kept():
    sts = only(rendered("persistence"), "StatefulSet")["spec"]
    assert sts["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "longhorn"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_gallery_in_emptydir_without_persistence():
    sts = only(rendered("cpu"), "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in sts
    assert "persistentVolumeClaimRetentionPolicy" not in sts
    assert {"name": "data", "emptyDir": {}} in sts["template"]["spec"]["volumes"]
    assert sts["replicas"] == 1


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_runs_locked_down(value_set):
    docs = rendered(value_set)
    spec = pod_spec(docs)
    assert spec["automountServiceAccountToken"] is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(docs)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    # The only writable places are the gallery and /tmp.
    writable = {m["mountPath"] for m in container(docs)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/kubevision", "/tmp"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes(value_set):
    docs = rendered(value_set)
    c = container(docs)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    # kubelet's gRPC probe is plain text only: TCP connects when the port speaks TLS.
    action = {"tcpSocket": {"port": GRPC_PORT}} if value_set in TLS_SETS else {"grpc": {"port": GRPC_PORT}}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert {k: v for k, v in c[probe].items() if k in ("grpc", "tcpSocket", "exec", "httpGet")} == action
    assert env(docs)["KUBEVISION_LISTEN"]["value"] == f"0.0.0.0:{GRPC_PORT}"
    assert env(docs)["KUBEVISION_METRICS_LISTEN"]["value"] == f"0.0.0.0:{METRICS_PORT}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_and_network_policy_select_the_pods(value_set):
    docs = rendered(value_set)
    sts = workload(docs)
    selector = sts["spec"]["selector"]["matchLabels"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    services = {s["metadata"]["name"]: s["spec"] for s in of_kind(docs, "Service")}
    assert services.keys() == {FULLNAME, f"{FULLNAME}-headless"}
    assert services[FULLNAME]["type"] == "ClusterIP"
    headless = services[f"{FULLNAME}-headless"]
    assert headless["clusterIP"] == "None"
    # The kiosks balance over the headless name's addresses: ready pods only.
    assert not headless.get("publishNotReadyAddresses", False)
    if sts["kind"] == "StatefulSet":
        assert sts["spec"]["serviceName"] == f"{FULLNAME}-headless"
    for spec in services.values():
        assert spec["selector"] == selector
        assert {p["name"]: (p["port"], p["targetPort"]) for p in spec["ports"]} == {
            "grpc": (GRPC_PORT, "grpc"), "metrics": (METRICS_PORT, "metrics")}
    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == selector
    assert policy["policyTypes"] == ["Ingress"]
    assert sorted(p["port"] for rule in policy["ingress"] for p in rule["ports"]) == [METRICS_PORT, GRPC_PORT]
    assert only(docs, "PodDisruptionBudget")["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "kubevision-offload"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert doc["metadata"]["namespace"] == NAMESPACE


def network_rules(value_set: str) -> dict[int, list]:
    """Port -> allowed peers (an empty list: any source)."""
    rules = only(rendered(value_set), "NetworkPolicy")["spec"]["ingress"]
    return {rule["ports"][0]["port"]: rule.get("from", []) for rule in rules}


def test_network_policy_peers():
    assert network_rules("defaults") == {GRPC_PORT: [], METRICS_PORT: []}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cattle-monitoring-system"}}}
    assert network_rules("gpu") == {GRPC_PORT: [], METRICS_PORT: [monitoring]}
    # With an Ingress, gRPC is reachable from the ingress controller only.
    controller = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
    }
    assert network_rules("ingress-tls") == {GRPC_PORT: [controller], METRICS_PORT: []}


def test_ingress_with_cert_manager_certificate():
    docs = rendered("ingress-tls")
    ingress = only(docs, "Ingress")
    host = "kubevision.line1.plant.example"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    # The service speaks TLS here, so nginx must too towards the pods.
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPCS",
        "nginx.ingress.kubernetes.io/auth-tls-secret": "kubevision/kiosk-ca",
        "nginx.ingress.kubernetes.io/auth-tls-verify-client": "on",
    }
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": FULLNAME, "port": {"name": "grpc"}}
    (tls,) = ingress["spec"]["tls"]
    cert = only(docs, "Certificate")["spec"]
    issuer = only(docs, "Issuer")
    assert tls == {"hosts": [host], "secretName": cert["secretName"]}
    assert cert["dnsNames"] == [host]
    assert cert["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"}
    assert issuer["spec"] == {"ca": {"secretName": "plant-ca"}}


def test_ingress_with_an_existing_cluster_issuer():
    docs = render("--set", "ingress.enabled=true,ingress.certManager.issuerRef.name=plant-ca,"
                  f"ingress.certManager.issuerRef.kind=ClusterIssuer,{TRIAL}")
    assert not of_kind(docs, "Issuer")
    assert only(docs, "Certificate")["spec"]["issuerRef"] == {
        "name": "plant-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert only(docs, "Ingress")["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"


def tls_wiring(docs: list[dict]) -> tuple[str, dict[str, str]]:
    """The Secret mounted for TLS, and for each TLS variable set the Secret key its file comes from."""
    spec = pod_spec(docs)
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "tls"]
    assert mount["readOnly"] is True
    files = {}
    for var, entry in env(docs).items():
        if var.startswith("KUBEVISION_TLS_") and not entry["value"].startswith("/etc/kubevision/kiosk-ca/"):
            directory, files[var] = entry["value"].rsplit("/", 1)
            assert directory == mount["mountPath"]
    return volume["secret"]["secretName"], files


@pytest.mark.parametrize("value_set, mtls", [("gpu", True), ("ingress-tls", False)])
def test_tls_secret_written_by_the_chart(value_set, mtls):
    docs = rendered(value_set)
    values = yaml.safe_load((HERE / "values" / f"{value_set}.yaml").read_text())["tls"]
    name, files = tls_wiring(docs)
    (secret,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == name]
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    expected = {"KUBEVISION_TLS_CERT": values["cert"], "KUBEVISION_TLS_KEY": values["key"]}
    if mtls:
        expected["KUBEVISION_TLS_CLIENT_CA"] = values["clientCA"]
    assert {var: data[key] for var, key in files.items()} == expected


def test_tls_from_an_existing_secret():
    docs = rendered("persistence")
    name, files = tls_wiring(docs)
    assert name == "kubevision-offload-tls"
    assert files == {"KUBEVISION_TLS_CERT": "tls.crt", "KUBEVISION_TLS_KEY": "tls.key",
                     "KUBEVISION_TLS_CLIENT_CA": "ca.crt"}
    assert not of_kind(docs, "Secret")
    assert "checksum/secrets" not in only(docs, "StatefulSet")["spec"]["template"]["metadata"].get("annotations", {})


def test_no_tls_and_no_token_by_default():
    docs = rendered("defaults")
    assert not [k for k in env(docs) if k.startswith("KUBEVISION_TLS") or k == "KUBEVISION_TOKEN"]
    assert not of_kind(docs, "Secret")


def test_token_from_values():
    docs = rendered("gpu")
    ref = env(docs)["KUBEVISION_TOKEN"]["valueFrom"]["secretKeyRef"]
    (secret,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == ref["name"]]
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "test-token-not-a-secret"
    # The pods restart when the token changes.
    checksum = only(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
    other = render(*template_args("gpu"), "--set", "auth.token=another-token")
    assert only(other, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"] != checksum
    assert env(docs)["RUST_LOG"] == {"name": "RUST_LOG", "value": "info"}


PLANT_PEPPER_ID = "0123456789abcdef"  # tests/chart/values/postgres-cnpg.yaml


def test_plant_pepper_id_reaches_the_service():
    # Issue 22: without it the service refuses unkeyed hashes but cannot tell
    # the plant's key id from another's; the chart passes it when given.
    docs = rendered("postgres-cnpg")
    assert env(docs)["KUBEVISION_PLANT_PEPPER_ID"] == {"name": "KUBEVISION_PLANT_PEPPER_ID", "value": PLANT_PEPPER_ID}
    # Also for the SQLite StatefulSet, and an id that YAML would read as a
    # number stays the string the service parses.
    docs = render("--set-string", "auth.plantPepperId=0123456789012345", "--set", TRIAL)
    assert workload(docs)["kind"] == "StatefulSet"
    assert env(docs)["KUBEVISION_PLANT_PEPPER_ID"]["value"] == "0123456789012345"
    # Empty by default: no variable, the service accepts any key id (and warns).
    for value_set in VALUE_SETS:
        if value_set != "postgres-cnpg":
            assert "KUBEVISION_PLANT_PEPPER_ID" not in env(rendered(value_set)), value_set


def test_token_from_an_existing_secret():
    docs = rendered("ingress-tls")
    assert env(docs)["KUBEVISION_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kiosk-token", "key": "bearer"}
    assert all(s["metadata"]["name"] != "kiosk-token" for s in of_kind(docs, "Secret"))


def test_autoscaler_owns_the_replica_count():
    docs = rendered("postgres-cnpg")
    hpa = only(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    # A replicas field would reset the autoscaler's choice on every helm upgrade.
    assert "replicas" not in only(docs, "Deployment")["spec"]
    assert not of_kind(rendered("defaults"), "HorizontalPodAutoscaler")


# --- the gallery store --------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_workload_kind_follows_the_store(value_set):
    docs = rendered(value_set)
    kind = "Deployment" if value_set in POSTGRES_SETS else "StatefulSet"
    assert workload(docs)["kind"] == kind
    # The PodDisruptionBudget and the autoscaler act on that workload's pods.
    w = workload(docs)
    assert only(docs, "PodDisruptionBudget")["spec"]["selector"] == w["spec"]["selector"]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": kind, "name": w["metadata"]["name"]}
    names = {e for e in env(docs) if e.startswith("KUBEVISION_STORE") or e == "KUBEVISION_CATCH_UP_SECS"}
    if kind == "StatefulSet":
        # SQLite, as before: no database variables, one replica at most.
        assert not names
        assert w["spec"].get("replicas", 1) <= 1
        assert not of_kind(docs, "HorizontalPodAutoscaler")
    else:
        assert names >= {"KUBEVISION_STORE", "KUBEVISION_CATCH_UP_SECS"}
        # No state in the pods: no claims, the data directory is scratch.
        assert "volumeClaimTemplates" not in w["spec"]
        assert {"name": "data", "emptyDir": {}} in pod_spec(docs)["volumes"]
        assert "serviceName" not in w["spec"]


def test_rolling_updates_need_no_spare_gpu():
    gpu = only(rendered("postgres-cnpg"), "Deployment")["spec"]["strategy"]
    assert gpu == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    cpu = only(rendered("postgres-secret"), "Deployment")["spec"]["strategy"]
    assert cpu == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def db_ca_wiring(docs: list[dict]) -> tuple[dict, str] | None:
    """The db-ca volume and the Secret key KUBEVISION_STORE_CA_FILE reads, or None."""
    variables = env(docs)
    volumes = [v for v in pod_spec(docs)["volumes"] if v["name"] == "db-ca"]
    mounts = [m for m in container(docs)["volumeMounts"] if m["name"] == "db-ca"]
    if "KUBEVISION_STORE_CA_FILE" not in variables:
        assert not volumes and not mounts
        return None
    (volume,), (mount,) = volumes, mounts
    assert mount["readOnly"] is True
    directory, file = variables["KUBEVISION_STORE_CA_FILE"]["value"].rsplit("/", 1)
    assert directory == mount["mountPath"]
    # Only the certificate is projected (a CloudNativePG CA Secret holds the CA's key too).
    (item,) = volume["secret"]["items"]
    assert item["path"] == file
    return volume, item["key"]


def test_postgres_from_an_existing_secret():
    docs = rendered("postgres-secret")
    variables = env(docs)
    assert variables["KUBEVISION_STORE"]["valueFrom"]["secretKeyRef"] == {"name": "plant-gallery-db", "key": "connection"}
    assert variables["KUBEVISION_CATCH_UP_SECS"]["value"] == "10"
    volume, key = db_ca_wiring(docs)
    assert (volume["secret"]["secretName"], key) == ("plant-db-ca", "root.crt")
    assert only(docs, "Deployment")["spec"]["replicas"] == 3
    assert not of_kind(docs, "Cluster")
    assert not of_kind(docs, "Secret"), "the connection string is never written by the chart"


def test_postgres_without_a_ca():
    docs = render("--set", f"gallery.store=postgres,gallery.postgres.existingSecret=db,{TRIAL}")
    assert env(docs)["KUBEVISION_STORE"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "uri"}
    assert env(docs)["KUBEVISION_CATCH_UP_SECS"]["value"] == "5"
    assert db_ca_wiring(docs) is None


def test_postgres_with_cloudnativepg():
    docs = rendered("postgres-cnpg")
    cluster = only(docs, "Cluster")
    name = f"{FULLNAME}-db"
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["name"] == name
    assert cluster["spec"] == {
        "instances": 3,
        "bootstrap": {"initdb": {"database": "kubevision", "owner": "kubevision"}},
        "storage": {"size": "20Gi", "storageClass": "longhorn"},
    }
    # Its volumes are the gallery: kept on uninstall like the SQLite claims.
    assert cluster["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # The Secrets CloudNativePG writes: <cluster>-app (uri) and <cluster>-ca (ca.crt).
    assert env(docs)["KUBEVISION_STORE"]["valueFrom"]["secretKeyRef"] == {"name": f"{name}-app", "key": "uri"}
    volume, key = db_ca_wiring(docs)
    assert (volume["secret"]["secretName"], key) == (f"{name}-ca", "ca.crt")

    gone = render(*template_args("postgres-cnpg"), "--set", "persistence.keep=false")
    assert "annotations" not in only(gone, "Cluster")["metadata"]
    default_class = render(*template_args("postgres-cnpg"), "--set", "gallery.postgres.cloudnativepg.storage.storageClass=")
    assert "storageClass" not in only(default_class, "Cluster")["spec"]["storage"]


def test_cloudnativepg_names_fit_its_services():
    # The longest object name the chart makes (63 characters).
    docs = render(*template_args("postgres-cnpg"), "--set", "fullnameOverride=" + "k" * 63)
    name = only(docs, "Cluster")["metadata"]["name"]
    assert name == "k" * 50 + "-db"
    jsonschema.validate(only(docs, "Cluster"), CNPG_CLUSTER_SCHEMA)
    # <cluster>-rw, -ro and -r are Service names: at most 63 characters.
    assert name.endswith("-db") and len(name) + len("-rw") <= 63, name


# --- identities, the kiosk CA, secure by default -------------------------------


IDENTITIES_DIR = "/etc/kubevision/identities"


def identities_sources(docs: list[dict]) -> list[dict]:
    """The Secrets projected into the identities directory (checking its wiring)."""
    variables = env(docs)
    assert variables["KUBEVISION_IDENTITIES"]["value"] == IDENTITIES_DIR
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "identities"]
    assert mount == {"name": "identities", "mountPath": IDENTITIES_DIR, "readOnly": True}
    (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "identities"]
    return [source["secret"] for source in volume["projected"]["sources"]]


def test_defaults_refuse_a_gallery_anyone_could_change():
    for args in ([], ["--skip-schema-validation"]):
        proc = helm("template", RELEASE, str(CHART), *args)
        assert proc.returncode != 0, "the defaults rendered without credentials"
        assert "auth.allowUnauthenticated=true" in proc.stderr, proc.stderr
        assert "without credentials anyone who reaches the port can change the gallery" in proc.stderr
    # helm lint says the same about the defaults.
    proc = helm("lint", "--strict", str(CHART))
    assert proc.returncode != 0
    assert "auth.allowUnauthenticated" in proc.stdout + proc.stderr


@pytest.mark.parametrize("setting", [
    "auth.allowUnauthenticated=true",
    "auth.token=a-token-of-32-characters-or-more!",
    "auth.existingSecret=kiosk-token",
    "auth.existingIdentitiesSecret=plant-identities",
    "auth.identities[0].name=k,auth.identities[0].scopes[0]=identify,auth.identities[0].tokenSha256=" + "a" * 64,
    "tls.enabled=true,tls.existingSecret=s,tls.mtls=true",
    "tls.enabled=true,tls.mtls=true,auth.kioskCA.certManager=true",
])
def test_any_credential_or_the_trial_opt_in_renders(setting):
    assert workload(render("--set", setting))


def test_the_trial_opt_in_renders_an_open_service():
    docs = rendered("defaults")
    assert "KUBEVISION_IDENTITIES" not in env(docs)
    assert all(v["name"] != "identities" for v in pod_spec(docs)["volumes"])


def test_identities_from_the_values():
    docs = rendered("cpu")
    assert identities_sources(docs) == [{"name": f"{FULLNAME}-identities"}]
    (secret,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == f"{FULLNAME}-identities"]
    assert secret["type"] == "Opaque"
    assert list(secret["data"]) == ["values.json"]
    values = yaml.safe_load((HERE / "values" / "cpu.yaml").read_text())["auth"]["identities"]
    text = base64.b64decode(secret["data"]["values.json"]).decode()
    # The service's format (offload-service/src/identity.rs): token_sha256, never a token.
    assert json.loads(text) == {"identities": [
        {"name": i["name"], "scopes": i["scopes"], "token_sha256": i["tokenSha256"]} for i in values]}
    # The pods restart on a helm upgrade that changes them (the service also reloads them).
    assert "checksum/secrets" in workload(docs)["spec"]["template"]["metadata"]["annotations"]


def test_identities_from_an_existing_secret():
    docs = rendered("postgres-secret")
    assert identities_sources(docs) == [{"name": "plant-kiosk-identities"}]
    assert not of_kind(docs, "Secret")


def test_kiosk_ca_through_cert_manager():
    docs = rendered("plant")
    ca = f"{FULLNAME}-kiosk-ca"
    issuers = {i["metadata"]["name"]: i["spec"] for i in of_kind(docs, "Issuer")}
    assert issuers == {f"{ca}-bootstrap": {"selfSigned": {}}, ca: {"ca": {"secretName": ca}}}
    certificates = {c["metadata"]["name"]: c["spec"] for c in of_kind(docs, "Certificate")}
    ca_cert = certificates[ca]
    assert ca_cert["isCA"] is True
    assert ca_cert["secretName"] == ca
    assert ca_cert["issuerRef"] == {"name": f"{ca}-bootstrap", "kind": "Issuer", "group": "cert-manager.io"}
    # The service requires client certificates signed by that CA: only its ca.crt is mounted.
    variables = env(docs)
    directory, file = variables["KUBEVISION_TLS_CLIENT_CA"]["value"].rsplit("/", 1)
    (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "kiosk-ca"]
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "kiosk-ca"]
    assert (mount["mountPath"], mount["readOnly"]) == (directory, True)
    assert volume["secret"] == {"secretName": ca, "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert file == "ca.crt"
    # The service's own certificate is issued from the kiosk CA, for its in-cluster names.
    server = certificates[f"{FULLNAME}-server"]
    assert server["issuerRef"] == {"name": ca, "kind": "Issuer", "group": "cert-manager.io"}
    assert f"{FULLNAME}.{NAMESPACE}.svc" in server["dnsNames"]
    assert f"{FULLNAME}-headless.{NAMESPACE}.svc" in server["dnsNames"]
    assert "server auth" in server["usages"]
    name, files = tls_wiring(docs)
    assert name == server["secretName"]
    assert files == {"KUBEVISION_TLS_CERT": "tls.crt", "KUBEVISION_TLS_KEY": "tls.key"}
    assert not of_kind(docs, "Secret"), "no key or certificate in the values or the manifests"
    # Registered kiosks (register-kiosk) reach the service through this Secret, once it exists.
    assert identities_sources(docs) == [{"name": f"{FULLNAME}-kiosks", "optional": True}]


def test_kiosk_ca_with_a_server_certificate_from_the_values():
    docs = rendered("postgres-cnpg")
    assert f"{FULLNAME}-server" not in {c["metadata"]["name"] for c in of_kind(docs, "Certificate")}
    (tls,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == f"{FULLNAME}-tls"]
    assert "ca.crt" not in tls["data"], "the client CA is the kiosk CA, not one from the values"
    assert env(docs)["KUBEVISION_TLS_CLIENT_CA"]["value"] == "/etc/kubevision/kiosk-ca/ca.crt"
    assert identities_sources(docs) == [
        {"name": f"{FULLNAME}-identities"}, {"name": f"{FULLNAME}-kiosks", "optional": True}]


def test_the_readme_issues_kiosk_certificates_from_the_kiosk_ca():
    """chart/README.md's kiosk Certificate is one cert-manager accepts, from the chart's kiosk CA Issuer."""
    readme = (CHART / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    (kiosk,) = [yaml.safe_load(b) for b in blocks if "client auth" in b]
    jsonschema.validate({**kiosk, "metadata": {**kiosk["metadata"], "namespace": NAMESPACE}},
                        CERT_MANAGER_SCHEMAS["Certificate"])
    spec = kiosk["spec"]
    assert spec["commonName"] == "kiosk-line-3"
    assert spec["usages"] == ["client auth", "digital signature"]
    assert spec["issuerRef"]["name"] == "<release>-kubevision-offload-kiosk-ca"
    assert spec["issuerRef"]["kind"] == "Issuer"
