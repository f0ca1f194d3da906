-- depends: 0001_core
-- SMS service: one row per recipient of an alert version, and the SMSC message ids that lead a
-- delivery receipt back to its row (docs/sms.md).

-- States: queued, submitted, delivered, failed, expired, cancelled, superseded.
CREATE TABLE sms_messages (
    -- Alert id (UUID text), or `api:<idempotency key>` for a batch sent through the API.
    alert        text        NOT NULL,
    -- Text version of the alert (1 at send, +1 per update).
    version      integer     NOT NULL,
    -- E.164 destination, with its '+'.
    address      text        NOT NULL,
    -- Operator the number was routed to (configured name).
    operator     text        NOT NULL,
    -- Segments (communication units) the text takes.
    segments     smallint    NOT NULL,
    state        text        NOT NULL DEFAULT 'queued' CHECK (state IN
                 ('queued', 'submitted', 'delivered', 'failed', 'expired', 'cancelled', 'superseded')),
    -- SMSC message id of each segment once accepted.
    message_ids  text[]      NOT NULL DEFAULT '{}',
    -- Bind that carried the submission.
    bind         text,
    -- Why it failed: an SMPP command status (`0x0b`), a receipt state (`UNDELIV`), or `expired`.
    error        text,
    -- submit_sm attempts so far (throttled answers not counted).
    attempts     smallint    NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    submitted_at timestamptz,
    done_at      timestamptz,
    PRIMARY KEY (alert, version, address)
) WITH (fillfactor = 70);  -- room on the page: queued -> submitted -> delivered stay HOT updates

-- Receipt correlation: an SMSC message id is unique per operator (each SMSC numbers its own).
CREATE TABLE sms_message_ids (
    operator   text    NOT NULL,
    message_id text    NOT NULL,
    alert      text    NOT NULL,
    version    integer NOT NULL,
    address    text    NOT NULL,
    PRIMARY KEY (operator, message_id)
);
