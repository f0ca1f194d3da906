-- depends: 0010_channel
-- Voice API batches (services/voice/api.py, PlaceCalls): what a batch's stream entries carry
-- besides its numbers, written in the transaction that queues its calls in voice_messages, as
-- sms_api_batches (0080) does for SMS. A Redis that lost its data (restarted empty, flushed) lost
-- the entries not yet read; the voice service writes them again from here for the calls still
-- `queued` (services/channel/apirepair.py, docs/voice.md). Unlike an SMS batch, a voice batch is
-- spoken in the language its caller chose: kept beside the text. No phone number here: those are
-- the batch's rows in voice_messages. A row goes a day after its batch expired
-- (services/channel/apibatches.py, `forget_expired`): nothing of the batch is placed by then.
CREATE TABLE voice_api_batches (
    -- `api:<caller>:<idempotency key>`: the `alert` of the batch's rows in voice_messages
    -- (version 1).
    batch_id   text        PRIMARY KEY,
    -- Originator the entries carry (the service's default sender).
    sender     text        NOT NULL,
    -- The language the text is spoken in (nl, fr, de, en).
    language   text        NOT NULL,
    -- The text spoken, as the entries carry it.
    text       text        NOT NULL,
    -- Nothing of the batch is placed after this.
    expires_at timestamptz NOT NULL,
    -- The caller's share of the bulk lane; '' while voice entries carry none (each batch then
    -- stands for itself).
    entity     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Retention deletes by expiry.
CREATE INDEX voice_api_batches_expires ON voice_api_batches (expires_at);
