-- The delivery log: what was notified to whom, and every webhook attempt. Never rebuilt:
-- these rows are what keeps replays and projection rebuilds from firing effects again.

-- Events that reached at least one workspace, as the log holds them (current version).
CREATE TABLE notification_events (
    event_id text PRIMARY KEY,
    sequence bigint NOT NULL UNIQUE,
    type text NOT NULL,
    ordering_key text NOT NULL,
    body bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (event, concerned workspace): the feed outbox and the workspace's log.
CREATE TABLE notifications (
    event_id text NOT NULL REFERENCES notification_events (event_id),
    workspace_id text NOT NULL,
    sequence bigint NOT NULL,
    type text NOT NULL,
    members text[] NOT NULL DEFAULT '{}',
    concerns text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    PRIMARY KEY (event_id, workspace_id)
);
CREATE INDEX notifications_unpublished ON notifications (sequence) WHERE published_at IS NULL;
CREATE INDEX notifications_by_workspace ON notifications (workspace_id, sequence);

CREATE TABLE webhook_endpoints (
    endpoint_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    url text NOT NULL,
    secret text NOT NULL,
    -- exact types ("project.staffed") or "<aggregate>.*"; empty = every type
    event_types text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    paused boolean NOT NULL DEFAULT false,
    -- the projection checkpoint when registered: only later events are delivered to it
    registered_after_seq bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    -- the service instance delivering to it now (one at a time keeps the order)
    lease_owner text,
    lease_until timestamptz
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace_id)
    WHERE removed_at IS NULL;

CREATE TABLE webhook_deliveries (
    delivery_id text PRIMARY KEY,
    event_id text NOT NULL REFERENCES notification_events (event_id),
    endpoint_id text NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    workspace_id text NOT NULL,
    sequence bigint NOT NULL,
    type text NOT NULL,
    ordering_key text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,        -- all attempts ever
    round_attempts integer NOT NULL DEFAULT 0,  -- attempts since created or redelivered
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    last_status_code integer,
    last_error text,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, ordering_key, sequence)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_workspace ON webhook_deliveries (workspace_id, sequence);

CREATE TABLE webhook_attempts (
    delivery_id text NOT NULL REFERENCES webhook_deliveries (delivery_id),
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text NOT NULL
        CHECK (outcome IN ('in_flight', 'delivered', 'failed', 'interrupted')),
    status_code integer,
    latency_ms double precision,
    error text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE webhook_dead_letters (
    delivery_id text PRIMARY KEY REFERENCES webhook_deliveries (delivery_id),
    endpoint_id text NOT NULL,
    workspace_id text NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    attempts integer NOT NULL,
    reason text NOT NULL,
    dead_at timestamptz NOT NULL DEFAULT now(),
    redelivered_at timestamptz  -- set while a redelivery is under way or done
);
CREATE INDEX webhook_dead_letters_by_workspace ON webhook_dead_letters (workspace_id, dead_at);

-- Effects (notifications, deliveries) are created only for events above this mark, which
-- only grows: a projection rebuilt from sequence 1 recomputes its state, not its effects.
CREATE TABLE effects_watermark (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq bigint NOT NULL DEFAULT 0
);
INSERT INTO effects_watermark (singleton, last_seq) VALUES (true, 0);

CREATE INDEX webhook_attempts_in_flight ON webhook_attempts (delivery_id)
    WHERE outcome = 'in_flight';
