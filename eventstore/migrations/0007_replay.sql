-- The replay CLI (issue 6). Numbered 0007 so that it sorts after main's
-- 0006_saga_timers. A rebuild or republish saves how far it got here, in
-- the same transaction as its work, so one stopped by Ctrl-C resumes where
-- it left off instead of starting over.
CREATE TABLE replay_checkpoints
(
    -- What runs, e.g. `rebuild` or `republish:<options>`.
    name            text PRIMARY KEY,
    -- The options it was started with; a run with other options starts over.
    options         text        NOT NULL,
    -- The last event done, in the relay's (transaction_id, global_position)
    -- order.
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    -- Events done so far, for the progress bar of a resumed run.
    done            bigint      NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
