-- The postgres-es event store (its `events` and `snapshots` tables, unchanged
-- columns), plus what the relay and replay need: a global position on every
-- event, a stable event id, the commit timestamp and the writing transaction.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- Assigned at insert, so positions can become visible out of order when
    -- transactions commit in another order than they inserted; readers that
    -- tail by position must bound themselves by `transaction_id` (below).
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    event_id        uuid                         NOT NULL DEFAULT gen_random_uuid(),
    recorded_at     timestamptz                  NOT NULL DEFAULT clock_timestamp(),
    -- The inserting transaction: an event is safe to publish in position order
    -- once its transaction is older than every transaction still in flight
    -- (pg_snapshot_xmin(pg_current_snapshot())).
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE INDEX events_transaction_position ON events (transaction_id, global_position);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
