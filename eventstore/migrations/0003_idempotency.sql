-- Responses remembered per (user, Idempotency-Key) so that a retried POST gets
-- the same answer and produces no second event. A row without a status is a
-- request still in flight.
CREATE TABLE idempotency_keys
(
    user_id          text        NOT NULL,
    idempotency_key  text        NOT NULL,
    request_hash     bytea       NOT NULL,
    -- The id given to whatever the request creates, so that a request re-run
    -- after a crash addresses the same aggregate instead of creating another.
    resource_id      uuid        NOT NULL,
    response_status  smallint,
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
