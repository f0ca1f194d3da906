-- Benchmarks and tests only (bench/load.py applies it): never part of a deployment's schema.
-- Which synthetic population is loaded; lets a loader skip a reload. IF NOT EXISTS: databases
-- made before this table left migrations/0002_targeting.sql have it already.
CREATE TABLE IF NOT EXISTS synthetic_populations (
    seed        bigint      NOT NULL,
    subscribers bigint      NOT NULL,
    complete    boolean     NOT NULL DEFAULT false,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seed, subscribers)
);
