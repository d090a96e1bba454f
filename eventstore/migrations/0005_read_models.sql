-- Read models (issue 4), built by the projection workers from the Kafka
-- topics and queried by the gateway's GET endpoints. Each row carries its
-- own checkpoint (`last_sequence`, the aggregate's last applied event),
-- written in the same statement or transaction as the change it records, so
-- re-applying an event is detected and changes nothing.
CREATE TABLE ticket_views
(
    id            text PRIMARY KEY,
    title         text        NOT NULL,
    price_cents   bigint      NOT NULL,
    user_id       text        NOT NULL,
    -- The order holding it; NULL = available.
    order_id      text,
    -- The API's version: last_sequence - 1.
    version       bigint      NOT NULL,
    last_sequence bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ticket_views_available ON ticket_views (id) WHERE order_id IS NULL;

CREATE TABLE order_views
(
    id                 text PRIMARY KEY,
    user_id            text        NOT NULL,
    -- created | cancelled | complete (the API's strings).
    status             text        NOT NULL,
    expires_at         timestamptz NOT NULL,
    ticket_id          text        NOT NULL,
    ticket_title       text        NOT NULL,
    ticket_price_cents bigint      NOT NULL,
    ticket_version     bigint      NOT NULL,
    payment_id         text,
    version            bigint      NOT NULL,
    last_sequence      bigint      NOT NULL,
    -- globalPosition of OrderPlaced: "oldest first" without a clock.
    placed_position    bigint      NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX order_views_by_user ON order_views (user_id, placed_position);

CREATE TABLE payment_views
(
    id             text PRIMARY KEY,
    order_id       text        NOT NULL,
    user_id        text        NOT NULL,
    amount_cents   bigint      NOT NULL,
    currency       text        NOT NULL,
    -- pending | succeeded | failed
    status         text        NOT NULL,
    stripe_id      text,
    failure_reason text,
    version        bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_views_by_order ON payment_views (order_id);
