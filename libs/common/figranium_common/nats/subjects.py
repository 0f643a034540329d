"""The names in NATS the services share: streams, consumers, buckets and subjects.

Every subject carries a version (``.v1``): a message whose shape changes incompatibly
gets a new subject, so old and new services never read each other's messages wrongly.
"""

from __future__ import annotations

RUNS_STREAM = "RUNS"
RUNS_SUBJECT_PREFIX = "figranium.runs.v1"
RUNS_DEFAULT_SUBJECT = f"{RUNS_SUBJECT_PREFIX}.default"
RUNNERS_CONSUMER = "runners"
# Headful runs (a visible browser) go to headful runners only, through a consumer of their
# own; the "runners" consumer stays on the default subject (KEDA scales runners on it).
RUNS_HEADFUL_SUBJECT = f"{RUNS_SUBJECT_PREFIX}.headful"
HEADFUL_CONSUMER = "headful-runners"

EVENTS_STREAM = "RUN_EVENTS"
EVENTS_SUBJECT_PREFIX = "figranium.events.v1"
INGESTER_CONSUMER = "ingester"

# JetStream publishes an advisory when a run message exhausted its deliveries; keeping
# those advisories in a stream makes "mark it crashed" durable even if no gateway is up.
DEAD_STREAM = "RUN_DEAD"
_MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{RUNS_STREAM}"
DEAD_SUBJECTS = [
    f"{_MAX_DELIVERIES_ADVISORY}.{consumer}" for consumer in (RUNNERS_CONSUMER, HEADFUL_CONSUMER)
]
DEAD_CONSUMER = "dead-letters"

NOTIFY_SUBJECT_PREFIX = "figranium.notify.v1.execution"
# A setting changed (e.g. the API key): every gateway replica reloads it at once.
SETTINGS_NOTIFY_SUBJECT = "figranium.notify.v1.settings"
# Core NATS ping, no body: "execution_changes has new rows", so every replica's change
# streams read PostgreSQL now instead of at their next poll.
CHANGES_NOTIFY_SUBJECT = "figranium.notify.v1.changes"
# Core NATS ping, no body: "a schedule was saved or deleted", so every scheduler replica
# recomputes its wake-up time now instead of at its next timed poll.
SCHEDULES_NOTIFY_SUBJECT = "figranium.notify.v1.schedules"
CAPTURES_BUCKET = "captures"
# Cabinet items' bytes (figranium_common.cabinet_models), apart from the captures so that
# the captures' size cap never drops one; sized by CABINETS_MAX_TOTAL_BYTES.
CABINETS_BUCKET = "cabinets"
# Run results too large for one NATS message wait here, named by execution and attempt
# (result_object_name), until a gateway stored them; the TTL clears what none took.
RESULTS_BUCKET = "results"
RESULTS_TTL_SECONDS = 7 * 24 * 3600
# Stop requests: a key per execution id, so a runner that picks the run up later skips it,
# and a core-NATS subject that interrupts a runner already running it.
STOPS_BUCKET = "stops"
STOPS_STREAM = f"KV_{STOPS_BUCKET}"  # the stream under the bucket
STOP_SUBJECT_PREFIX = "figranium.control.v1.stop"
# Core-NATS request/reply services every runner answers, one runner per request (a queue
# group): PageCaptureRequest and ScriptCheckRequest (figranium_common.models).
TOOLS_PAGE_SUBJECT = "figranium.tools.v1.page"
TOOLS_SCRIPT_SUBJECT = "figranium.tools.v1.script"
# TestActionRequest: one action of a task tried on a scratch page.
TOOLS_TEST_ACTION_SUBJECT = "figranium.tools.v1.test-action"
TOOLS_QUEUE = "figranium-runners"
# Headful runners (figranium_common.headful), over core NATS: each announces its
# HeadfulPresence every few seconds and whenever pinged (empty body); a viewer ticket is a
# request/reply to one runner's own subject.
HEADFUL_PRESENCE_SUBJECT = "figranium.headful.v1.presence"
HEADFUL_PING_SUBJECT = "figranium.headful.v1.ping"
HEADFUL_TICKET_SUBJECT_PREFIX = "figranium.headful.v1.ticket"


def run_subject(mode: str) -> str:
    """Where a run request for a task of ``mode`` is published: headful tasks to headful
    runners."""
    return RUNS_HEADFUL_SUBJECT if mode == "headful" else RUNS_DEFAULT_SUBJECT


def headful_ticket_subject(runner_id: str) -> str:
    return f"{HEADFUL_TICKET_SUBJECT_PREFIX}.{runner_id}"


def stop_subject(execution_id: str) -> str:
    return f"{STOP_SUBJECT_PREFIX}.{execution_id}"


def event_subject(execution_id: str) -> str:
    return f"{EVENTS_SUBJECT_PREFIX}.{execution_id}"


def notify_subject(execution_id: str) -> str:
    return f"{NOTIFY_SUBJECT_PREFIX}.{execution_id}"


def result_object_name(execution_id: str, attempt: int) -> str:
    return f"{execution_id}.{attempt}"
