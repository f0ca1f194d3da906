-- depends: 0003_sms
-- SMS API batches (services/sms/api.py): what a batch's stream entries carry besides its numbers,
-- written in the transaction that queues its recipients in sms_messages. A Redis that lost its
-- data (restarted empty, flushed) lost the entries not yet read; the SMS service writes them again
-- from here for the recipients still `queued` (services/sms/repair.py, docs/sms.md). No phone
-- number here: those are the batch's rows in sms_messages. A row goes a day after its batch
-- expired (services/sms/batches.py, `forget_expired`): nothing of the batch is sent by then.
CREATE TABLE sms_api_batches (
    -- `api:<caller>:<idempotency key>`: the `alert` of the batch's rows in sms_messages (version 1).
    batch_id   text        PRIMARY KEY,
    -- Originator as chosen at send (the request's, the caller's first, or the service default).
    sender     text        NOT NULL,
    -- The text, as the entries carry it (language 'en').
    text       text        NOT NULL,
    -- Nothing of the batch is sent after this.
    expires_at timestamptz NOT NULL,
    -- The caller's share of the bulk lane (`api:<caller>`).
    entity     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Retention deletes by expiry.
CREATE INDEX sms_api_batches_expires ON sms_api_batches (expires_at);
