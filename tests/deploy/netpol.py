"""Which connections a set of Kubernetes NetworkPolicies admits: the ingress half of the
networking.k8s.io/v1 semantics, for the constructs deploy/kubernetes uses.

A pod no policy selects (for ingress) admits everything. A pod that some policy selects admits a
connection when any rule of any of those policies admits it: the rule's ports (none: every port) hold
the port, and its peers (none: every source) hold the source. A peer with a podSelector alone means
pods of the policy's own namespace; with a namespaceSelector, pods of the namespaces it selects.

What is not modelled raises :class:`Unsupported` rather than being judged wrongly: matchExpressions,
ipBlock, named ports, protocols other than TCP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Labels = Mapping[str, str]


class Unsupported(ValueError):
    """A policy uses a construct this model does not evaluate."""


@dataclass(frozen=True)
class Source:
    """Where a connection comes from: a pod (its namespace and labels), or outside the cluster
    (``namespace`` None): a client on the internet, a load balancer's node."""

    namespace: str | None
    labels: Labels = field(default_factory=dict)

    @property
    def namespace_labels(self) -> Labels:
        # Kubernetes sets this label on every namespace (1.22 and later).
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def selects(selector: Mapping[str, Any] | None, labels: Labels) -> bool:
    """A LabelSelector against labels; an empty selector selects everything."""
    selector = selector or {}
    unknown = set(selector) - {"matchLabels"}
    if unknown:
        raise Unsupported(f"label selector fields {sorted(unknown)}")
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


def _governs_ingress(policy: Mapping[str, Any]) -> bool:
    # policyTypes unset: Ingress always, Egress only with egress rules.
    return "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])


def _port_matches(rule: Mapping[str, Any], port: int) -> bool:
    ports = rule.get("ports") or []
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            raise Unsupported(f"protocol {entry['protocol']}")
        if "port" not in entry:
            return True  # every port of the protocol
        if not isinstance(entry["port"], int):
            raise Unsupported(f"named port {entry['port']!r}")
        if entry["port"] <= port <= entry.get("endPort", entry["port"]):
            return True
    return False


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, source: Source) -> bool:
    if "ipBlock" in peer:
        raise Unsupported("ipBlock")
    unknown = set(peer) - {"podSelector", "namespaceSelector"}
    if unknown:
        raise Unsupported(f"peer fields {sorted(unknown)}")
    if source.namespace is None:
        return False  # pod and namespace selectors only ever select pods
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], source.namespace_labels)
    else:
        namespace_ok = source.namespace == policy_namespace
    return namespace_ok and selects(peer.get("podSelector"), source.labels)


def _rule_admits(rule: Mapping[str, Any], policy_namespace: str, source: Source, port: int) -> bool:
    if not _port_matches(rule, port):
        return False
    peers = rule.get("from") or []
    return not peers or any(_peer_matches(peer, policy_namespace, source) for peer in peers)


def admits(policies: Iterable[Mapping[str, Any]], namespace: str, pod_labels: Labels, source: Source,
           port: int) -> bool:
    """Whether a TCP connection from ``source`` to ``port`` of a pod (``namespace``, ``pod_labels``)
    is admitted by the NetworkPolicies ``policies`` (those of every namespace may be given)."""
    governing = [policy for policy in policies
                 if policy["kind"] == "NetworkPolicy"
                 and policy["metadata"]["namespace"] == namespace
                 and _governs_ingress(policy)
                 and selects(policy["spec"].get("podSelector"), pod_labels)]
    if not governing:
        return True
    return any(_rule_admits(rule, namespace, source, port)
               for policy in governing for rule in policy["spec"].get("ingress") or [])
