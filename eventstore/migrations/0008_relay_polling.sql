-- The relay no longer relies on NOTIFY from the write path. A transaction that
-- NOTIFYs takes PostgreSQL's notification-queue lock through its commit, so
-- committing writers queue behind each other one WAL flush at a time instead
-- of sharing flushes (group commit): measured here with pgbench, insert-only
-- commits fell from about 4,000/s to about 1,000/s with the NOTIFY. The relay
-- polls instead (RELAY_POLL_INTERVAL_MS, 10 ms by default), a cheap index-range
-- read, which adds on average half an interval to publication latency.
DROP TRIGGER IF EXISTS events_notify_relay ON events;
DROP FUNCTION IF EXISTS notify_events_inserted();
