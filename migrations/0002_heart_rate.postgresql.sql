-- Heart-rate readings, participants and a per-minute view, on PostgreSQL. With the
-- TimescaleDB extension (available and preloaded) heart_rate becomes a compressed
-- hypertable with a retention policy and heart_rate_1m a continuous aggregate; on
-- plain PostgreSQL heart_rate_1m is an ordinary view with the same columns:
--   bucket timestamptz, room_id, participant_id, avg_bpm numeric, max_bpm smallint,
--   min_bpm smallint, readings bigint.
CREATE TABLE IF NOT EXISTS heart_rate (
    time TIMESTAMPTZ NOT NULL,
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    bpm SMALLINT NOT NULL,
    rr_ms REAL[] NOT NULL DEFAULT '{}',
    energy_kj INTEGER,
    contact BOOLEAN
);
-- No foreign key to rooms: a hypertable cannot be referenced and the readings of a
-- class outlive it (retention decides when they go); the same table on both paths.

-- A re-sent reading carries the same seq and device time, so INSERT ... ON CONFLICT DO
-- NOTHING stores it once. TimescaleDB requires the partitioning column (time) in every
-- unique index, hence time in the key.
CREATE UNIQUE INDEX IF NOT EXISTS heart_rate_reading
    ON heart_rate (room_id, participant_id, seq, time);

CREATE INDEX IF NOT EXISTS heart_rate_participant_time
    ON heart_rate (room_id, participant_id, time);

CREATE TABLE IF NOT EXISTS participants (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at DOUBLE PRECISION NOT NULL,
    age INTEGER,
    max_hr INTEGER,
    resting_hr INTEGER,
    weight_kg DOUBLE PRECISION,
    sex TEXT,
    zone_method TEXT NOT NULL DEFAULT 'hrmax',
    PRIMARY KEY (room_id, id)
);

-- The TimescaleDB branch. Notes, checked against TimescaleDB's documentation and tests:
-- * Migrations run each file in one transaction. CREATE MATERIALIZED VIEW ... WITH
--   (timescaledb.continuous) refuses to run in a transaction block or a function only
--   when it must materialize (WITH DATA, the default); WITH NO DATA is allowed there
--   (timescaledb tsl/test/sql/continuous_aggs_refresh.sql does exactly this in a DO
--   block and in BEGIN ... COMMIT). The refresh policy fills it in later, and
--   materialized_only = false (real-time aggregation; the default became true in 2.13)
--   makes rows not yet materialized show up in queries at once.
-- * CREATE EXTENSION timescaledb is only attempted when the library is preloaded:
--   without shared_preload_libraries it fails with FATAL, which ends the session and
--   cannot be caught. Without the privilege to create it, the plain path is taken; a
--   role that cannot read shared_preload_libraries (it needs pg_read_all_settings)
--   gets a warning that says so, not one about creating the extension.
-- * Under TimescaleDB's Apache licence (the -oss images, timescaledb.license =
--   'apache') continuous aggregates, compression and retention policies do not exist:
--   the plain path is taken, with a warning, instead of failing the migration.
-- * Timescale-only DDL goes through EXECUTE so that plain PostgreSQL never parses it.
DO $$
DECLARE
    timescale BOOLEAN := FALSE;
    preloaded TEXT;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        timescale := TRUE;
    ELSIF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            preloaded := current_setting('shared_preload_libraries');
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'cannot read shared_preload_libraries (grant pg_read_all_settings, '
                'or create the timescaledb extension as a superuser): heart_rate stays a '
                'plain table';
        END;
        IF preloaded IS NOT NULL THEN
            BEGIN
                IF position('timescaledb' IN preloaded) > 0 THEN
                    CREATE EXTENSION IF NOT EXISTS timescaledb;
                    timescale := TRUE;
                ELSE
                    RAISE WARNING 'timescaledb is installed but not in '
                        'shared_preload_libraries: heart_rate stays a plain table';
                END IF;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'no privilege to create the timescaledb extension: '
                    'heart_rate stays a plain table';
            END;
        END IF;
    END IF;
    IF timescale AND current_setting('timescaledb.license', true) = 'apache' THEN
        RAISE WARNING 'timescaledb runs under its Apache licence (an -oss build): continuous '
            'aggregates, compression and retention policies need the community licence '
            '(timescaledb.license = timescale); heart_rate stays a plain table';
        timescale := FALSE;
    END IF;

    IF timescale THEN
        PERFORM create_hypertable('heart_rate', 'time',
            chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);

        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW IF NOT EXISTS heart_rate_1m
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT
                time_bucket(INTERVAL '1 minute', time) AS bucket,
                room_id,
                participant_id,
                avg(bpm) AS avg_bpm,
                max(bpm) AS max_bpm,
                min(bpm) AS min_bpm,
                count(*) AS readings
            FROM heart_rate
            GROUP BY time_bucket(INTERVAL '1 minute', time), room_id, participant_id
            WITH NO DATA
        $cagg$;
        -- Materialize the last week every 5 minutes: readings drained late from a
        -- writer's spool (after a database outage) land within that window.
        PERFORM add_continuous_aggregate_policy('heart_rate_1m',
            start_offset => INTERVAL '7 days',
            end_offset => INTERVAL '1 minute',
            schedule_interval => INTERVAL '5 minutes',
            if_not_exists => TRUE);

        -- Compressed chunks are queried per participant: segment by the participant,
        -- order by time (seq too, as it is in the unique index).
        EXECUTE $compress$
            ALTER TABLE heart_rate SET (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'room_id, participant_id',
                timescaledb.compress_orderby = 'time DESC, seq DESC')
        $compress$;
        PERFORM add_compression_policy('heart_rate',
            compress_after => INTERVAL '7 days', if_not_exists => TRUE);

        -- Raw readings are dropped after two years; the per-minute aggregate keeps what
        -- it materialized. A self-hoster changes the window with:
        --   SELECT remove_retention_policy('heart_rate');
        --   SELECT add_retention_policy('heart_rate', drop_after => INTERVAL '5 years');
        -- (or keeps everything by only removing it).
        PERFORM add_retention_policy('heart_rate',
            drop_after => INTERVAL '2 years', if_not_exists => TRUE);
    ELSE
        -- Minutes in UTC, whatever the session's TimeZone.
        CREATE OR REPLACE VIEW heart_rate_1m AS
        SELECT
            date_trunc('minute', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
            room_id,
            participant_id,
            avg(bpm) AS avg_bpm,
            max(bpm) AS max_bpm,
            min(bpm) AS min_bpm,
            count(*) AS readings
        FROM heart_rate
        GROUP BY 1, room_id, participant_id;
    END IF;
END
$$;
