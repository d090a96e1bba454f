-- One create-ticket's worth of writing, and nothing else: one row the size
-- of a TicketCreated event, committed on its own (pgbench runs each script
-- execution as one autocommitted transaction).
INSERT INTO pgbench_events (aggregate_id, sequence, event_type, payload, metadata)
VALUES (gen_random_uuid(), 1, 'TicketCreated',
        '{"TicketCreated":{"title":"loadtest-ticket","price_cents":10000,"user_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}}',
        '{"correlation_id":"pgbench","causation_id":"pgbench"}');
