"""Process settings, read once from the environment at the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Config(BaseSettings):
    """Every knob of every service; each service reads only what it needs.

    docs/configuration.md lists these variables; keep the two in step.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    port: int = Field(default=11345, ge=1, le=65535, alias="PORT")
    host: str = Field(default="0.0.0.0", alias="HOST")
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres", alias="DATABASE_URL"
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", alias="NATS_URL")
    # NATS refuses anonymous clients: each service connects as its own user (gateway,
    # scheduler or runner), allowed only the subjects that service uses.
    nats_user: str | None = Field(default=None, alias="NATS_USER")
    nats_password: str | None = Field(default=None, alias="NATS_PASSWORD")
    # Replicas of every stream, KV bucket and object store the gateway declares: 3 on a
    # three-node JetStream cluster, so losing one node loses nothing.
    nats_replicas: int = Field(default=1, ge=1, le=5, alias="NATS_REPLICAS")
    # How soon a client notices a server that stopped answering without closing the
    # connection (a frozen or cut-off node): after about interval x (pings + 1), it
    # reconnects to another node. The defaults are the NATS client's own.
    nats_ping_interval_seconds: int = Field(
        default=120, ge=1, le=3600, alias="NATS_PING_INTERVAL_SECONDS"
    )
    nats_max_outstanding_pings: int = Field(
        default=2, ge=1, le=100, alias="NATS_MAX_OUTSTANDING_PINGS"
    )
    # TLS to NATS: the CA that signed the server's certificate (or the system's CAs with
    # a tls:// URL), and a client certificate and key when the server asks for one.
    nats_tls_ca: Path | None = Field(default=None, alias="NATS_TLS_CA")
    nats_tls_cert: Path | None = Field(default=None, alias="NATS_TLS_CERT")
    nats_tls_key: Path | None = Field(default=None, alias="NATS_TLS_KEY")
    data_dir: Path = Field(default=Path("./.data"), alias="FIGRANIUM_DATA_DIR")
    api_key: str | None = Field(default=None, alias="FIGRANIUM_API_KEY")
    # Encrypts secrets at rest; without it, master.key in the data folder (created once).
    master_key: str | None = Field(default=None, alias="FIGRANIUM_MASTER_KEY")
    # Seals the secrets inside NATS messages (figranium_common.transit). Runners get this
    # instead of the master key; gateways and schedulers derive it from the master key
    # unless it is set (then all three must share it).
    transit_key: str | None = Field(default=None, alias="FIGRANIUM_TRANSIT_KEY")
    # How long the RUN_EVENTS stream keeps run events the ingester has not taken yet.
    run_events_max_age_seconds: float = Field(
        default=86_400.0, ge=3600, alias="RUN_EVENTS_MAX_AGE_SECONDS"
    )
    auth: Literal["on", "off"] = Field(default="on", alias="FIGRANIUM_AUTH")
    # Wrong API keys from one client: delayed past the first, refused (429) past the second
    # number within the window, for the lockout time.
    auth_slow_after_failures: int = Field(default=5, ge=0, alias="AUTH_SLOW_AFTER_FAILURES")
    auth_lockout_after_failures: int = Field(default=20, ge=1, alias="AUTH_LOCKOUT_AFTER_FAILURES")
    auth_failure_window_seconds: float = Field(
        default=600.0, gt=0, alias="AUTH_FAILURE_WINDOW_SECONDS"
    )
    auth_lockout_seconds: float = Field(default=300.0, gt=0, alias="AUTH_LOCKOUT_SECONDS")
    # Behind a load balancer: the client is the last X-Forwarded-For address.
    trust_forwarded_for: bool = Field(default=False, alias="TRUST_FORWARDED_FOR")
    # Larger request bodies are refused with 413.
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, alias="MAX_BODY_BYTES")
    allow_private_networks: bool = Field(default=False, alias="ALLOW_PRIVATE_NETWORKS")
    # Cloud metadata endpoints (169.254.169.254, fd00:ec2::254, ...) stay refused even with
    # private networks allowed, unless this is true too.
    allow_metadata_address: bool = Field(default=False, alias="ALLOW_METADATA_ADDRESS")
    chromium_path: str | None = Field(default=None, alias="CHROMIUM_PATH")
    # Headless runs: default the system's chromium-headless-shell, else CHROMIUM_PATH's.
    chromium_headless_path: str | None = Field(default=None, alias="CHROMIUM_HEADLESS_PATH")
    runner_concurrency: int = Field(default=2, ge=1, le=64, alias="RUNNER_CONCURRENCY")
    # ``null``: runs complete at once with a success result and no browser, after
    # RUNNER_NULL_DELAY_MS; for the control-plane benchmark and fault tests only.
    runner_engine: Literal["playwright", "null"] = Field(
        default="playwright", alias="RUNNER_ENGINE"
    )
    runner_null_delay_ms: int = Field(default=0, ge=0, le=600_000, alias="RUNNER_NULL_DELAY_MS")
    run_timeout_seconds: float = Field(default=300.0, gt=0, alias="RUN_TIMEOUT_SECONDS")
    run_ack_wait_seconds: float = Field(default=30.0, ge=1, alias="RUN_ACK_WAIT_SECONDS")
    run_max_deliver: int = Field(default=3, ge=1, le=20, alias="RUN_MAX_DELIVER")
    # Run calls are refused with 429 QUEUE_FULL while this many runs are unfinished
    # (queued or running); 0 accepts every call.
    run_queue_limit: int = Field(default=10_000, ge=0, alias="RUN_QUEUE_LIMIT")
    runner_drain_seconds: float = Field(default=25.0, ge=0, alias="RUNNER_DRAIN_SECONDS")
    # A run's log lines said within this long go out as one event, its start with the first
    # of them; a run that ends sooner sends one event in all. Live lines are this much late.
    run_log_linger_seconds: float = Field(default=2.0, ge=0, le=30, alias="RUN_LOG_LINGER_SECONDS")
    # The iterations one while, repeat or foreach may make before the run ends with an
    # error; a task's maxLoopIterations overrides it for that task.
    max_loop_iterations: int = Field(default=1000, ge=1, alias="RUNNER_MAX_LOOP_ITERATIONS")
    # The captcha solving service runners call (createTask/getTaskResult API); when set
    # on a runner, it wins over the one stored through /api/settings/captcha.
    captcha_solver_url: str | None = Field(default=None, alias="CAPTCHA_SOLVER_URL")
    captcha_solver_key: str | None = Field(default=None, alias="CAPTCHA_SOLVER_KEY")
    # How long autoSolveCaptcha looks for a ready widget after each navigation or input.
    captcha_auto_detect_timeout_ms: int = Field(
        default=5000, ge=1, le=600_000, alias="CAPTCHA_AUTO_DETECT_TIMEOUT_MS"
    )
    # CSV extraction output: text cells a spreadsheet would read as a formula get a "'".
    csv_neutralise_formulas: bool = Field(default=True, alias="CSV_NEUTRALISE_FORMULAS")
    # Bounds on the work a task or the pages it visits can make a runner do; past one, the
    # action fails with an [ERROR] line naming the setting (results: MAX_RESULT_BYTES).
    regex_timeout_ms: int = Field(default=250, ge=1, le=60_000, alias="RUNNER_REGEX_TIMEOUT_MS")
    max_variable_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, alias="RUNNER_MAX_VARIABLE_BYTES"
    )
    max_variables_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, alias="RUNNER_MAX_VARIABLES_BYTES"
    )
    max_log_lines: int = Field(default=5000, ge=10, alias="RUNNER_MAX_LOG_LINES")
    max_log_line_chars: int = Field(default=2000, ge=80, alias="RUNNER_MAX_LOG_LINE_CHARS")
    action_timeout_ms: int = Field(default=10_000, ge=100, alias="ACTION_TIMEOUT_MS")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="LOG_LEVEL"
    )
    log_format: Literal["auto", "json", "console"] = Field(default="auto", alias="LOG_FORMAT")
    health_db_timeout_seconds: float = Field(default=2.0, gt=0, alias="HEALTH_DB_TIMEOUT_SECONDS")
    # Finished executions and captures older than this many days are deleted; 0 keeps all.
    retention_days: float = Field(default=7, ge=0, alias="RETENTION_DAYS")
    retention_interval_seconds: float = Field(
        default=3600.0, gt=0, alias="RETENTION_INTERVAL_SECONDS"
    )
    # A run's result larger than NATS's payload limit goes through the "results" object
    # store; one larger than this ends the run with RESULT_TOO_LARGE instead.
    max_result_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, alias="MAX_RESULT_BYTES")
    # The "results" object store bucket holds at most this much (0: no limit); results
    # leave it once the gateway stored them.
    results_max_bytes: int = Field(default=512 * 1024**2, ge=0, alias="RESULTS_MAX_BYTES")
    # An execution's stored result beyond this size is kept whole apart and shown as a
    # preview with hasFullResult (GET /api/executions/:id/result serves it whole).
    result_preview_bytes: int = Field(default=256 * 1024, ge=1024, alias="RESULT_PREVIEW_BYTES")
    # A downloaded file larger than this is dropped (the run goes on).
    max_download_bytes: int = Field(default=100 * 1024 * 1024, ge=1, alias="MAX_DOWNLOAD_BYTES")
    # The "captures" object store bucket holds at most this much (0: no limit); a capture
    # that does not fit is dropped with a log line. JetStream reserves both buckets' sizes
    # up front: together they must fit its storage (10 GiB in deploy/k8s).
    captures_max_bytes: int = Field(default=4 * 1024**3, ge=0, alias="CAPTURES_MAX_BYTES")
    # Cabinets (figranium_common.cabinet_models): the bytes one cabinet's items may take,
    # and all cabinets together (also the "cabinets" bucket's size, reserved up front like
    # the captures'); an item that would pass either is refused and its object deleted.
    cabinet_max_bytes: int = Field(default=1024**3, ge=1, alias="CABINET_MAX_BYTES")
    cabinets_max_total_bytes: int = Field(
        default=2 * 1024**3, ge=1, alias="CABINETS_MAX_TOTAL_BYTES"
    )
    # Cabinet items older than this many days are deleted with their bytes; 0 keeps them.
    cabinet_retention_days: float = Field(default=0, ge=0, alias="CABINET_RETENTION_DAYS")
    # The scheduler sleeps until the next due time, at most this long (a changed schedule
    # wakes it at once through NATS; the cap covers a missed notice).
    scheduler_max_sleep_seconds: float = Field(
        default=30.0, gt=0, le=3600, alias="SCHEDULER_MAX_SLEEP_SECONDS"
    )
    scheduler_metrics_port: int = Field(
        default=9464, ge=0, le=65535, alias="SCHEDULER_METRICS_PORT"
    )
    # Operability: each service's /metrics, /livez and /readyz port (0 turns it off), and
    # how many contexts one Chromium opens before a runner replaces it (bounds its memory).
    gateway_metrics_port: int = Field(default=9465, ge=0, le=65535, alias="GATEWAY_METRICS_PORT")
    runner_metrics_port: int = Field(default=9466, ge=0, le=65535, alias="RUNNER_METRICS_PORT")
    runner_browser_max_contexts: int = Field(default=200, ge=1, alias="RUNNER_BROWSER_MAX_CONTEXTS")
    # The nice value a runner gives its Chromium (all its processes), so that browser work
    # yields the CPU to services sharing the machine. 0 leaves Chromium as Playwright starts it.
    runner_browser_nice: int = Field(default=0, ge=0, le=19, alias="RUNNER_BROWSER_NICE")
    # Headful runners: Chromium headed on a virtual display, watched through noVNC.
    runner_headful: bool = Field(default=False, alias="RUNNER_HEADFUL")
    novnc_port: int = Field(default=54311, ge=0, le=65535, alias="NOVNC_PORT")
    novnc_public_url: str | None = Field(default=None, alias="NOVNC_PUBLIC_URL")
    novnc_web_dir: str = Field(default="/usr/share/novnc", alias="NOVNC_WEB_DIR")
    headful_screen: str = Field(
        default="1280x800", pattern=r"^\d{3,4}x\d{3,4}$", alias="HEADFUL_SCREEN"
    )
    headful_ticket_ttl_seconds: float = Field(
        default=60.0, gt=0, le=3600, alias="HEADFUL_TICKET_TTL_SECONDS"
    )
    scheduler_batch_size: int = Field(default=500, ge=1, le=10_000, alias="SCHEDULER_BATCH_SIZE")
    # How often each scheduler replica reports it is alive; a replica is counted as
    # running by GET /api/schedules/status/all for three of these.
    scheduler_heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=300, alias="SCHEDULER_HEARTBEAT_SECONDS"
    )
    # A due time later than this is a missed run (every scheduler was down): misfirePolicy
    # then decides between one catch-up run and none.
    scheduler_misfire_grace_seconds: float = Field(
        default=60.0, ge=0, alias="SCHEDULER_MISFIRE_GRACE_SECONDS"
    )
    # Webhooks after runs: each attempt's timeout, how many attempts in all, the first
    # retry's delay (later ones grow to about 80 times it), how often replicas look for due ones.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, alias="WEBHOOK_TIMEOUT_SECONDS")
    webhook_max_attempts: int = Field(default=6, ge=1, le=50, alias="WEBHOOK_MAX_ATTEMPTS")
    webhook_backoff_seconds: float = Field(default=30.0, gt=0, alias="WEBHOOK_BACKOFF_SECONDS")
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60, alias="WEBHOOK_POLL_SECONDS")
    # After a rotation the previous webhook secret still signs deliveries this long, so
    # receivers can be switched over without refusing any.
    webhook_secret_overlap_seconds: float = Field(
        default=86400.0, ge=0, alias="WEBHOOK_SECRET_OVERLAP_SECONDS"
    )
    # AI providers (the gateway's selector and script generation): where each SDK sends its
    # requests (unset: the vendor's own API), one call's timeout, and how long a key that
    # got 429 is left out.
    gemini_base_url: str | None = Field(default=None, alias="GEMINI_BASE_URL")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    ai_timeout_seconds: float = Field(default=30.0, gt=0, le=600, alias="AI_TIMEOUT_SECONDS")
    ai_rate_limit_cooldown_seconds: float = Field(
        default=60.0, ge=0, alias="AI_RATE_LIMIT_COOLDOWN_SECONDS"
    )
    # Task templates: a catalogue in Figranium's format (an array of presets, each also at
    # <url>/<id>); unset, the /api/templates routes answer 501.
    templates_catalog_url: str | None = Field(default=None, alias="TEMPLATES_CATALOG_URL")
