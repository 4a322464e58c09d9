-- Batch data and long messages are compressed when stored (TOAST). lz4 costs the server a
-- fraction of the default pglz's CPU. A server without lz4 (or older than PostgreSQL 14)
-- keeps its default; EXECUTE makes that a run-time error this block can catch.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE batches ALTER COLUMN "data" SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE events ALTER COLUMN "message" SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 compression not available (%); keeping the default', SQLERRM;
END
$$;
