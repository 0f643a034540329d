"""Who may do what on NATS: one user per service, each allowed only the subjects it uses.

All users stay in the global account ($G), where KEDA's scaler reads the runners' backlog.
The gateway owns the topology (it declares streams, consumers and buckets); the scheduler
only publishes run requests; runners only bind to what the gateway declared. Clients
without a user are refused.

The same table renders the ``authorization`` block of `make run`'s private server, of
deploy/compose/nats.conf and of the Kubernetes NATS values (tests compare them).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from figranium_common.jsontypes import JsonObject
from figranium_common.nats import inbox_prefix

ROLES = ("gateway", "scheduler", "runner")
# Run requests and the stops bucket hold what runners read; only the gateway manages the
# streams under them.
_RUNNER_CONSUMERS = ("runners", "headful-runners")

# publish/subscribe allow lists per role; anything else is refused by the server.
PERMISSIONS: dict[str, JsonObject] = {
    "gateway": {
        "publish": {
            "allow": [
                "figranium.>",
                "$JS.API.>",
                "$JS.ACK.>",
                # Flow control replies of the consumers that read objects back (captures
                # served, large results ingested): without them a large object stalls.
                "$JS.FC.>",
                "$KV.stops.>",
                "$O.captures.>",
                "$O.results.>",
                "$O.cabinets.>",
            ]
        },
        "subscribe": {
            "allow": [
                f"{inbox_prefix('gateway')}.>",
                "figranium.notify.v1.>",
                "figranium.headful.v1.>",
            ]
        },
    },
    "scheduler": {
        "publish": {
            "allow": [
                "figranium.runs.v1.>",
                "figranium.notify.v1.changes",
                "figranium.headful.v1.ping",
            ]
        },
        "subscribe": {
            "allow": [
                f"{inbox_prefix('scheduler')}.>",
                "figranium.notify.v1.schedules",
                "figranium.headful.v1.presence",
            ]
        },
    },
    "runner": {
        "publish": {
            "allow": [
                "figranium.events.v1.>",
                "figranium.headful.v1.presence",
                *(f"$JS.API.CONSUMER.MSG.NEXT.RUNS.{c}" for c in _RUNNER_CONSUMERS),
                *(f"$JS.API.CONSUMER.INFO.RUNS.{c}" for c in _RUNNER_CONSUMERS),
                "$JS.ACK.RUNS.>",
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.KV_stops",
                "$JS.API.STREAM.MSG.GET.KV_stops",
                "$JS.API.DIRECT.GET.KV_stops.>",
                "$JS.API.STREAM.INFO.OBJ_captures",
                "$JS.API.STREAM.PURGE.OBJ_captures",
                "$O.captures.C.>",
                "$O.captures.M.>",
                # Results too large for one message (figranium_common.nats.RESULTS_BUCKET).
                "$JS.API.STREAM.INFO.OBJ_results",
                "$JS.API.STREAM.PURGE.OBJ_results",
                "$O.results.C.>",
                "$O.results.M.>",
                # Cabinet items: downloads stored, uploads read (figranium_common.nats
                # read_object: the meta, then each chunk by a direct get).
                "$JS.API.STREAM.INFO.OBJ_cabinets",
                "$JS.API.STREAM.PURGE.OBJ_cabinets",
                "$JS.API.STREAM.MSG.GET.OBJ_cabinets",
                "$JS.API.DIRECT.GET.OBJ_cabinets",
                "$O.cabinets.C.>",
                "$O.cabinets.M.>",
            ],
        },
        "subscribe": {
            "allow": [
                f"{inbox_prefix('runner')}.>",
                "figranium.control.v1.stop.*",
                "figranium.tools.v1.page",
                "figranium.tools.v1.script",
                "figranium.tools.v1.test-action",
                "figranium.headful.v1.ping",
                "figranium.headful.v1.ticket.*",
            ]
        },
        # Replies to the requests it serves (tools, viewer tickets), to their inboxes only.
        "allow_responses": True,
    },
}


def new_passwords(users: Sequence[str] = ROLES) -> dict[str, str]:
    # URL-safe, so a password can also sit in a NATS_URL unescaped.
    return {user: secrets.token_urlsafe(24) for user in users}


def load_or_create_passwords(path: Path, users: Sequence[str] = ROLES) -> dict[str, str]:
    """The passwords of ``users`` kept in ``path`` (0600), created on first use."""
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and all(isinstance(saved.get(u), str) for u in users):
            return {user: saved[user] for user in users}
    except (FileNotFoundError, ValueError):
        pass
    passwords = new_passwords(users)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle, indent=2)
        handle.write("\n")
    return passwords


def authorization_block(passwords: Mapping[str, str]) -> str:
    """The server's ``authorization`` block; a password starting with ``$`` is left
    unquoted, so the server reads it from its environment (compose, Kubernetes)."""
    users = []
    for role in ROLES:
        password = passwords[role]
        value = password if password.startswith("$") else json.dumps(password)
        users.append(
            f"    {{user: {json.dumps(role)}, password: {value},"
            f" permissions: {json.dumps(PERMISSIONS[role])}}}"
        )
    return "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"


def password_variable(role: str) -> str:
    """The environment variable holding ``role``'s password in compose and Kubernetes."""
    return f"NATS_{role.upper()}_PASSWORD"


_GENERATED = (
    "# Generated by `python -m figranium_devstack.natsauth` from\n"
    "# tools/devstack/figranium_devstack/natsauth.py: edit that, then run it again.\n"
)


def compose_config() -> str:
    """deploy/compose/nats.conf: the users, their passwords read from the environment."""
    header = (
        "# NATS for deploy/compose: no anonymous clients. Each service connects as its own\n"
        "# user, allowed only its subjects, all in the global account; the passwords come\n"
        "# from .env through the nats service's environment.\n"
    )
    block = authorization_block({role: f"${password_variable(role)}" for role in ROLES})
    return header + _GENERATED + block + COMPOSE_MONITORING


# Compose runs no autoscaler: the monitoring endpoint (/healthz, /jsz, /connz: every
# stream, consumer and connection) serves only the container's own healthcheck, so no
# other container on the network (a runner's browser among them) can read it.
COMPOSE_MONITORING = (
    "# Monitoring (/healthz for the healthcheck) inside the container only.\n"
    'http: "127.0.0.1:8222"\n'
)


def kubernetes_values() -> str:
    """deploy/k8s/nats-values.yaml: values for the nats-io/nats Helm chart."""
    users = [
        {
            "user": role,
            "password": f"<< ${password_variable(role)} >>",
            "permissions": PERMISSIONS[role],
        }
        for role in ROLES
    ]
    env = [
        f"    {password_variable(role)}:\n"
        "      valueFrom:\n"
        f"        secretKeyRef: {{name: figranium-nats, key: {password_variable(role)}}}\n"
        for role in ROLES
    ]
    return (
        "# Values for the nats-io/nats Helm chart (deploy/README.md):\n"
        "#   helm install nats nats/nats -n figranium -f deploy/k8s/nats-values.yaml\n"
        "# A three-node JetStream cluster on PVCs, the monitoring port on the Service (KEDA\n"
        "# reads the backlog there), and no anonymous clients: each service has its own user,\n"
        "# allowed only its subjects, all in the global account ($G, which KEDA's trigger\n"
        "# names). The\n"
        '# passwords come from the Secret "figranium-nats" as the NATS container\'s environment.\n'
        + _GENERATED
        + "config:\n"
        # Three JetStream nodes: the gateways' NATS_REPLICAS (the ConfigMap) is 3.
        "  cluster:\n"
        "    enabled: true\n"
        "    replicas: 3\n"
        "  jetstream:\n"
        "    enabled: true\n"
        "    fileStore:\n"
        "      pvc:\n"
        "        size: 10Gi\n"
        "  merge:\n"
        "    authorization:\n"
        "      users:\n"
        + "".join(f"        - {json.dumps(user)}\n" for user in users)
        + "service:\n"
        "  ports:\n"
        "    monitor:\n"
        "      enabled: true\n"
        "container:\n"
        "  env:\n" + "".join(env)
    )


def main() -> None:
    repo = Path(__file__).resolve().parents[3]
    (repo / "deploy" / "compose" / "nats.conf").write_text(compose_config())
    (repo / "deploy" / "k8s" / "nats-values.yaml").write_text(kubernetes_values())


if __name__ == "__main__":
    main()
