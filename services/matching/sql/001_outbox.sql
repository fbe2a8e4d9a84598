-- The outbox of the matching service: proposals to append to the log, one per trigger.
-- It lives in the service schema, NOT in the directory projection's schema, so rebuilding
-- the directory (`mf replay`) never touches it and nothing is ever proposed twice.
CREATE TABLE outbox (
    trigger_event_id text PRIMARY KEY,
    trigger_sequence bigint NOT NULL,
    trigger_type text NOT NULL,
    project_id text NOT NULL,
    event_id text NOT NULL UNIQUE,
    body bytea NOT NULL,                       -- the event exactly as it will be appended
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'published', 'skipped', 'failed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    expected_version bigint,                   -- the matching aggregate's version we appended at
    published_sequence bigint,
    outcome text,                              -- "appended", "already in the log", why skipped/failed
    done_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (trigger_sequence) WHERE status = 'pending';
CREATE INDEX outbox_by_project ON outbox (project_id, trigger_sequence);
