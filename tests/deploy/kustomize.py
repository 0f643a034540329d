"""Just enough of kustomize and of NetworkPolicy semantics to check deploy/k8s offline.

``build`` renders a kustomization the way ``kubectl kustomize`` does for the features
deploy/k8s uses (resources, namespace, labels, images, replicas, JSON 6902 patches) and
refuses any other feature, so a manifest change cannot silently escape the tests; a test
compares its output with ``kubectl kustomize`` where kubectl is installed.

``egress_allowed`` and ``ingress_allowed`` answer "may this pod open this connection" over
a set of NetworkPolicies, for ``matchLabels`` selectors, numeric ports and ``ipBlock``.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "images",
    "replicas",
    "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


def load_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(directory: Path) -> list[Obj]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise NotImplementedError(f"{directory}: kustomize fields not modelled: {unsupported}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += build(path)
        else:
            if not path.is_relative_to(directory.resolve()):
                raise ValueError(f"{entry}: kustomize loads no file outside {directory}")
            objects += load_documents(path)
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, patch)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    for entry in kustomization.get("labels", []):
        _apply_labels(objects, entry)
    for image in kustomization.get("images", []):
        _apply_image(objects, image)
    for replicas in kustomization.get("replicas", []):
        targets = [o for o in objects if o["kind"] in SCALABLE and name_of(o) == replicas["name"]]
        if not targets:
            raise LookupError(f"replicas: no workload named {replicas['name']}")
        for obj in targets:
            obj["spec"]["replicas"] = replicas["count"]
    return objects


def name_of(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def find(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and name_of(o) == name]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} {kind} named {name!r}")
    return matches[0]


def containers(obj: Obj) -> list[Obj]:
    spec = obj["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _apply_labels(objects: list[Obj], entry: Obj) -> None:
    if entry.get("includeSelectors"):
        raise NotImplementedError("labels with includeSelectors")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
        if entry.get("includeTemplates") and obj["kind"] in WORKLOADS:
            template = obj["spec"]["template"].setdefault("metadata", {})
            template.setdefault("labels", {}).update(entry["pairs"])


def split_image(reference: str) -> tuple[str, str | None]:
    """``name[:tag]`` into its parts (a registry port is part of the name)."""
    if "@" in reference:
        raise NotImplementedError("images by digest")
    head, _, last = reference.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
        return (f"{head}/{last}" if head else last), tag
    return reference, None


def _apply_image(objects: list[Obj], image: Obj) -> None:
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        for container in containers(obj):
            name, tag = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name


def _apply_patch(objects: list[Obj], patch: Obj) -> None:
    target = patch["target"]
    if set(target) - {"group", "version", "kind", "name"} or "path" in patch:
        raise NotImplementedError(f"patch form not modelled: {patch}")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise NotImplementedError("strategic merge patches")
    matched = [o for o in objects if _targets(o, target)]
    if not matched:
        raise LookupError(f"patch target matches nothing: {target}")
    for obj in matched:
        for operation in operations:
            _json_patch(obj, operation)


def _targets(obj: Obj, target: Obj) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    return bool(
        target.get("kind", obj["kind"]) == obj["kind"]
        and target.get("name", name_of(obj)) == name_of(obj)
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def _json_patch(obj: Obj, operation: Obj) -> None:
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) and last != "-" else last
    op = operation["op"]
    if op == "replace":
        _ = node[key]  # replace needs an existing member (RFC 6902)
        node[key] = copy.deepcopy(operation["value"])
    elif op == "add" and isinstance(node, list):
        node.insert(len(node) if key == "-" else key, copy.deepcopy(operation["value"]))
    elif op == "add":
        node[key] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del node[key]
    else:
        raise NotImplementedError(f"JSON patch op {op}")


# --- NetworkPolicy -------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    labels: dict[str, str]
    namespace: str
    ip: str
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def namespace_labels_with_name(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


Peer = Pod | str  # a pod, or an address outside the cluster


def _selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    if "matchExpressions" in selector:
        raise NotImplementedError("matchExpressions")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(rule_peer: Obj, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip if isinstance(peer, Pod) else peer)
        network = ipaddress.ip_network(block["cidr"])
        if address.version != network.version or address not in network:
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if not isinstance(peer, Pod):
        return False  # selectors only ever match pods
    if "namespaceSelector" in rule_peer:
        in_namespace = _selects(rule_peer["namespaceSelector"], peer.namespace_labels_with_name())
    else:
        in_namespace = peer.namespace == policy_namespace
    pod_selector = rule_peer.get("podSelector", {})
    return in_namespace and _selects(pod_selector, peer.labels)


def _port_matches(ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if "port" in entry and not isinstance(entry["port"], int):
            raise NotImplementedError("named ports in policies")
        if entry.get("protocol", "TCP") != protocol:
            continue
        low: int | None = entry.get("port")
        if low is None or low <= port <= entry.get("endPort", low):
            return True
    return False


def _policies_for(policies: Iterable[Obj], pod: Pod, direction: str) -> Iterator[Obj]:
    for policy in policies:
        if policy["metadata"].get("namespace") != pod.namespace:
            continue
        if not _selects(policy["spec"]["podSelector"], pod.labels):
            continue
        types = policy["spec"].get("policyTypes") or (
            ["Ingress", "Egress"] if "egress" in policy["spec"] else ["Ingress"]
        )
        if direction in types:
            yield policy


def _allowed(
    policies: Iterable[Obj], pod: Pod, peer: Peer, port: int, protocol: str, direction: str
) -> bool:
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    isolating = list(_policies_for(policies, pod, direction))
    if not isolating:
        return True
    for policy in isolating:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(p, peer, namespace) for p in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def egress_allowed(
    policies: Iterable[Obj], source: Pod, destination: Peer, port: int, protocol: str = "TCP"
) -> bool:
    return _allowed(policies, source, destination, port, protocol, "Egress")


def ingress_allowed(
    policies: Iterable[Obj], destination: Pod, source: Peer, port: int, protocol: str = "TCP"
) -> bool:
    return _allowed(policies, destination, source, port, protocol, "Ingress")
