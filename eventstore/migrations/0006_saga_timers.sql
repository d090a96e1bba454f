-- Durable saga timers: order expiry, ticket release after an order ended,
-- reservation repair and payment recovery. A timer is written in the same
-- transaction as the event that calls for it (see `CommitEffect`), so it
-- exists exactly when the event does.
CREATE TABLE saga_timers
(
    -- Derived from what the timer is about (e.g. `order-expiry:<order id>`),
    -- so scheduling the same timer twice is a no-op.
    id             text PRIMARY KEY,
    kind           text        NOT NULL,
    -- When it fires. A worker claims a due timer by moving `due_at` one lease
    -- into the future, so a claim never holds a transaction (or a lock) open
    -- while the follow-up command runs, and a worker that dies mid-task only
    -- delays the timer by the lease.
    due_at         timestamptz NOT NULL,
    payload        jsonb       NOT NULL,
    correlation_id text,
    traceparent    text,
    claimed_by     uuid,
    attempts       integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX saga_timers_due ON saga_timers (due_at);
