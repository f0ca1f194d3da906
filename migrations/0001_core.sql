-- Core tables shared by every service.

-- Idempotency keys for gRPC calls that create things (CreateAlert, SendSms batches): the first
-- call's response is stored, a repeat with the same key gets it back instead of acting twice.
CREATE TABLE idempotency_keys (
    scope      text        NOT NULL,
    key        text        NOT NULL,
    response   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
