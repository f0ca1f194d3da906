-- depends: 0004_alerting
-- The emergency information line (docs/infoline.md): who may activate it per entity, declared
-- emergency phases, the lines with their form and the provider's reports, liaison versions.

-- The mayor and the representatives named in advance, per entity. A removed person keeps the row
-- (removed_at set): who could activate when stays answerable.
CREATE TABLE infoline_persons (
    entity_id  bigint      NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id),
    function   text        NOT NULL CHECK (function IN ('mayor', 'representative')),
    added_at   timestamptz NOT NULL,
    removed_at timestamptz
);
CREATE UNIQUE INDEX infoline_persons_current ON infoline_persons (entity_id, user_id)
    WHERE removed_at IS NULL;

-- Emergency phases declared per entity; at most one in force per entity.
CREATE TABLE infoline_phases (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_id   bigint      NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    level       text        NOT NULL CHECK (level IN ('municipal', 'provincial', 'federal')),
    reason      text        NOT NULL DEFAULT '',
    declared_at timestamptz NOT NULL,
    declared_by text        NOT NULL,
    ended_at    timestamptz
);
CREATE UNIQUE INDEX infoline_phases_in_force ON infoline_phases (entity_id) WHERE ended_at IS NULL;

CREATE TABLE infoline_lines (
    id              uuid        PRIMARY KEY,
    entity_id       bigint      NOT NULL REFERENCES entities (id),
    requested_by    bigint      NOT NULL REFERENCES users (id),
    kind            text        NOT NULL CHECK (kind IN ('D5', 'D2')),
    exercise        boolean     NOT NULL,
    -- The activation form as filled in (ActivationForm fields as JSON).
    form            jsonb       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('requested', 'acknowledged', 'open',
                                                          'reduced', 'closing', 'closed')),
    requested_at    timestamptz NOT NULL,
    -- One hour after the request, or the desired opening if later: the provider's promise.
    open_by         timestamptz NOT NULL,
    acknowledged_at timestamptz,
    opened_at       timestamptz,
    closed_at       timestamptz,
    number          text        NOT NULL DEFAULT '',
    second_line     text        NOT NULL DEFAULT '',
    opening_hours   text        NOT NULL,
    operators       integer     NOT NULL,
    forward_to      text        NOT NULL DEFAULT '',
    -- The last provider event applied (its feed's sequence number).
    event_seq       bigint      NOT NULL DEFAULT 0,
    liaison_version integer     NOT NULL DEFAULT 0,
    -- Whether the broken promise (not open by open_by) has been audited (once per line).
    overdue_noted   boolean     NOT NULL DEFAULT false
);
CREATE INDEX infoline_lines_entity ON infoline_lines (entity_id, requested_at DESC);
CREATE INDEX infoline_lines_live ON infoline_lines (state) WHERE state <> 'closed';

-- The alerts a line supports: their texts and CAP document carry its number while it is open.
CREATE TABLE infoline_line_alerts (
    line_id  uuid NOT NULL REFERENCES infoline_lines (id) ON DELETE CASCADE,
    alert_id uuid NOT NULL REFERENCES alerts (id),
    PRIMARY KEY (line_id, alert_id)
);
CREATE INDEX infoline_line_alerts_alert ON infoline_line_alerts (alert_id);

-- The provider's hourly call figures per language line.
CREATE TABLE infoline_figures (
    line_id    uuid        NOT NULL REFERENCES infoline_lines (id) ON DELETE CASCADE,
    language   text        NOT NULL,
    hour_start timestamptz NOT NULL,
    offered    integer     NOT NULL,
    answered   integer     NOT NULL,
    abandoned  integer     NOT NULL,
    aht_s      double precision NOT NULL,
    operators  integer     NOT NULL,
    PRIMARY KEY (line_id, language, hour_start)
);

-- Liaison updates (questions and answers for the operators), one row per version.
CREATE TABLE infoline_liaison (
    line_id      uuid        NOT NULL REFERENCES infoline_lines (id) ON DELETE CASCADE,
    version      integer     NOT NULL,
    items        jsonb       NOT NULL,
    published_at timestamptz NOT NULL,
    published_by text        NOT NULL,
    -- Whether the provider has received this version.
    delivered    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (line_id, version)
);

-- The line's costs go into the entity's ledger next to its communication units: extend whatever
-- item check the ledger has by now (other parts may have extended it too) with the line's items.
DO $$
DECLARE
    current text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO current FROM pg_constraint
     WHERE conrelid = 'ledger'::regclass AND conname = 'ledger_item_check';
    ALTER TABLE ledger DROP CONSTRAINT ledger_item_check;
    EXECUTE format(
        'ALTER TABLE ledger ADD CONSTRAINT ledger_item_check CHECK (%s OR item IN (%L, %L))',
        substr(current, 7), 'infoline_staff_hours', 'infoline_telephony_minutes');
END;
$$;
