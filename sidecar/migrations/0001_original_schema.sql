-- The original implementation's schema (SPEC §6). IF NOT EXISTS, and the original's index
-- names, so that a database the original created is adopted as it is.
CREATE TABLE IF NOT EXISTS sidecars (
    "sidecarId" uuid PRIMARY KEY,
    "serviceName" text NOT NULL,
    "version" text NOT NULL,
    "created" timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS batches (
    "batchId" uuid PRIMARY KEY,
    "sidecarId" uuid NOT NULL REFERENCES sidecars ("sidecarId"),
    "data" text NOT NULL,
    "signature" varchar(128),
    "created" timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_sidecarid_index ON batches ("sidecarId");

CREATE TABLE IF NOT EXISTS events (
    "eventId" uuid PRIMARY KEY,
    "sidecarId" uuid NOT NULL REFERENCES sidecars ("sidecarId"),
    "batchId" uuid NULL REFERENCES batches ("batchId"),
    "sequence" integer NOT NULL,
    "message" text NOT NULL,
    "signature" varchar(128),
    "created" timestamptz NOT NULL,
    CONSTRAINT events_sidecarid_sequence_unique UNIQUE ("sidecarId", "sequence")
);
CREATE INDEX IF NOT EXISTS events_batchid_index ON events ("batchId");
CREATE INDEX IF NOT EXISTS events_sidecarid_index ON events ("sidecarId");
