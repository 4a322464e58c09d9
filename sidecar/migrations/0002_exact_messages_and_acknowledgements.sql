-- PostgreSQL text cannot hold U+0000. For a message that contains it, "message" keeps a
-- readable copy (U+0000 shown as U+FFFD) and "messageJson" the exact message as a JSON string.
ALTER TABLE events ADD COLUMN IF NOT EXISTS "messageJson" text NULL;

-- When the KMS acknowledged a batch; NULL while it still has to be reported. Batches written
-- before this column existed were reported by the original when they closed.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS "acknowledged" timestamptz NULL;
UPDATE batches SET "acknowledged" = "created" WHERE "acknowledged" IS NULL;
CREATE INDEX IF NOT EXISTS batches_unacknowledged_index
    ON batches ("created", "batchId") WHERE "acknowledged" IS NULL;

-- Inquiries ask for a service's batches by creation time.
CREATE INDEX IF NOT EXISTS batches_created_index ON batches ("created");
