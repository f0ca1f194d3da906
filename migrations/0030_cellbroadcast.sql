-- depends: 0001_core
-- Cell broadcast and location-based SMS requests to the operators (docs/cellbroadcast.md): the
-- durable queue of requests per alert version and operator, their states, and the messages of
-- ours each operator's CBC holds.

-- One row per alert the service has broadcast: its CBS message code, kept over its versions.
CREATE TABLE cb_alerts (
    alert_id     text        PRIMARY KEY,
    -- The serial number's message code (10 bits): every version of the alert keeps it.
    message_code integer     NOT NULL CHECK (message_code BETWEEN 0 AND 1023),
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Message codes are drawn in turn (modulo 1024), so that two live alerts rarely share one.
CREATE SEQUENCE cb_message_code_seq;

-- One request to one operator: broadcast an alert version, or withdraw the alert. The service
-- works through the open ones (requested, retrying) and picks them up again after a restart.
CREATE TABLE cb_requests (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    text        NOT NULL REFERENCES cb_alerts (alert_id) ON DELETE CASCADE,
    -- The alert version broadcast (0 for a withdrawal, which covers every version).
    version     integer     NOT NULL CHECK (version >= 0),
    channel     text        NOT NULL CHECK (channel IN ('cell_broadcast', 'lb_sms')),
    operator    text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('broadcast', 'withdraw')),
    -- What is sent: CBS messages and cells, or the LB-SMS request (services/cellbroadcast/store.py).
    payload     jsonb       NOT NULL,
    cells       integer     NOT NULL DEFAULT 0,
    state       text        NOT NULL DEFAULT 'requested' CHECK (state IN
                    ('requested', 'retrying', 'accepted', 'refused', 'withdrawn', 'superseded')),
    -- Why it was refused, or why it is being retried (the operator's answer).
    reason      text        NOT NULL DEFAULT '',
    attempts    integer     NOT NULL DEFAULT 0,
    -- LB-SMS: phones the operator reached.
    phones      bigint,
    -- The process working on it, and until when (a dead process's requests are taken over).
    lease_owner text,
    lease_until timestamptz,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- A retried request for the same alert version is the same row: never a second broadcast.
    UNIQUE (alert_id, version, channel, operator, action)
);
CREATE INDEX cb_requests_open ON cb_requests (id) WHERE state IN ('requested', 'retrying');

-- The messages of ours active at each operator's CBC. osmo-cbc's ECBE keeps one message per
-- message identifier and deletes by identifier, so this says whose a 409 or a delete is.
CREATE TABLE cb_active (
    operator   text    NOT NULL,
    message_id integer NOT NULL,
    alert_id   text    NOT NULL REFERENCES cb_alerts (alert_id) ON DELETE CASCADE,
    version    integer NOT NULL,
    PRIMARY KEY (operator, message_id)
);
CREATE INDEX cb_active_alert ON cb_active (alert_id);
