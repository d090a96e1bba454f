-- One row per order a user placed, until the order's deadline: the cap on
-- live orders per user counts these (less the orders the read model shows
-- ended) under a per-user advisory lock, so concurrent placements on any
-- number of gateways cannot pass it. Rows past their deadline are deleted.
CREATE TABLE order_slots
(
    user_id    text        NOT NULL,
    order_id   text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, order_id)
);

CREATE INDEX order_slots_expires_at ON order_slots (expires_at);
