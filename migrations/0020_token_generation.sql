-- Tokens carry their user's generation (claim "gen"); a password change or a disable bumps it,
-- so that every token issued before stops working at its next call (docs/security.md).
ALTER TABLE users ADD COLUMN token_generation integer NOT NULL DEFAULT 0;
