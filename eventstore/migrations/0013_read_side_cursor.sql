-- How far the read side has checked itself against the event store (issue
-- 19). The projection workers follow the store behind the relay: every
-- event up to this position (in the relay's publication order) is in the
-- read models. Advanced in the same transaction as the rows it heals, so a
-- crash re-checks rather than skips; kept beside the read models, not in
-- the broker, since the broker may lose what it was told.
CREATE TABLE read_side_cursor
(
    name            text PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
