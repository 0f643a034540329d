-- Where a run's result is delivered when it finishes (null: nowhere). Scheduled runs take
-- it from their schedule.
ALTER TABLE executions ADD COLUMN webhook_url text;
ALTER TABLE schedules ADD COLUMN webhook_url text;

-- Connections to third parties (Baserow). `config` holds the base URL in clear and the
-- token sealed (figranium_common.secretbox), never in clear.
CREATE TABLE credentials (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    provider    text NOT NULL,
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One webhook delivery per finished execution that asked for one, created in the
-- transaction that stored the result: a durable job any gateway replica may work on.
-- Its id is the X-Figranium-Delivery header, the same on every attempt.
CREATE TABLE webhook_deliveries (
    id               text PRIMARY KEY,
    execution_id     text NOT NULL UNIQUE REFERENCES executions (id) ON DELETE CASCADE,
    url              text NOT NULL,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- Every attempt, kept with its delivery.
CREATE TABLE webhook_attempts (
    delivery_id  text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    status       integer,
    error        text,
    duration_ms  integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
