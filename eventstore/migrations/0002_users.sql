-- Accounts are not event-sourced: sign-up and sign-in need a unique, indexed
-- email and nothing else subscribes to them.
CREATE TABLE users
(
    id            uuid PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email ON users (lower(email));
