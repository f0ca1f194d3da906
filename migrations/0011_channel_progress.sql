-- depends: 0010_channel 0004_alerting
-- Progress counters of every channel (docs/channel.md): recipients now in each state, and the
-- communication units of those that reached an operator, per (alert, version, channel, state).
-- The channel worker moves them in the same transaction as the recipients' rows; alerting reads
-- them (WatchAlert, the settler) instead of asking every channel service.

CREATE TABLE channel_progress (
    -- Alert id (UUID text), or `api:<idempotency key>` for a batch sent through the SMS API.
    alert      text    NOT NULL,
    version    integer NOT NULL,
    channel    text    NOT NULL,
    -- submitted, delivered, failed, expired, cancelled, superseded (never queued).
    state      text    NOT NULL,
    recipients bigint  NOT NULL DEFAULT 0,
    units      bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (alert, version, channel, state)
);
