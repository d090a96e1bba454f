-- The outbox relay (issue 3). The events table is the outbox: postgres-es
-- writes a command's events in one transaction, so a committed event is
-- durable by definition. The relay tails it in (transaction_id,
-- global_position) order and remembers how far it got here.
CREATE TABLE relay_cursor
(
    name            text PRIMARY KEY,
    -- The last published event: its transaction and position. Advanced only
    -- once the broker acknowledged every message up to it, so a crash
    -- re-sends rather than skips.
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Wakes the relay as soon as events commit (NOTIFY is delivered at commit,
-- and several in one transaction fold into one), so it need not poll fast.
-- The payload is empty: the relay reads the table anyway.
CREATE FUNCTION notify_events_inserted() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('ticketing_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_relay
    AFTER INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION notify_events_inserted();
