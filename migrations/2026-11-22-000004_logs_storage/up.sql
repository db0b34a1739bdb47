-- Log chunks are compressed with lz4 rather than the default pglz: about as small for
-- build output, and several times cheaper to compress and decompress, which matters
-- because every byte a job writes is compressed once when stored and decompressed for
-- every follower. Only new values use it; existing ones stay readable as they are.
-- A PostgreSQL built without lz4 (it has been optional since 14) keeps pglz.
DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        ALTER TABLE log_chunks ALTER COLUMN data SET COMPRESSION lz4;
    END IF;
END
$$;
