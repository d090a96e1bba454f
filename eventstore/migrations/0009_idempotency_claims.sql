-- Fences the runs of one Idempotency-Key. Each run that claims the key
-- writes a fresh token; it may record its response, or give the key back
-- after a server error, only while the token is still its own, so a run
-- slower than the takeover cannot write over its successor. NULL: no run
-- holds the key (answered, or given back after a server error, keeping
-- resource_id for the retry).
ALTER TABLE idempotency_keys ADD COLUMN claim_token uuid;
