-- 001_base: the tables every process shares, the rules the database itself
-- enforces on them, and the three roles.
--
-- Applied once by `ota-ctl db migrate` (in one transaction, recorded in
-- schema_migrations).  It must never hold a secret: codes appear only as
-- HMAC-SHA-256 hashes (common/topup_code.h), keys never.
--
-- Money rules that live HERE, not only in the worker's code
-- (../shared/ARCHITECTURE.md, "Money safety rules"):
--   * the ledger is append-only: UPDATE, DELETE and TRUNCATE are refused by
--     triggers (and never granted);
--   * UNIQUE (txn_id, kind) makes every write idempotent;
--   * one final entry per txn: `committed` and `voided` exclude each other
--     through a unique index on txn_id over the final entries;
--   * a final entry needs its `reserved` entry and repeats its card, amount,
--     currency and code (trigger);
--   * a `reserved` entry needs its code reserved for that very txn and card,
--     and carries the code's amount and currency (trigger);
--   * a code is committed at most once (unique index on the code over the
--     committed entries);
--   * codes move only issued -> reserved -> used, reserved -> issued
--     (released by a void) or issued -> revoked; hash, amount and currency
--     never change, rows are never deleted (trigger).
-- Times are timestamptz (UTC), amounts bigint in the smallest unit.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    checksum   text,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Roles: created once per cluster (roles are cluster-wide), NOLOGIN; a
-- deployment grants them to its login users (GRANT ota_worker TO svc_ota).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ota_worker', 'ota_finance', 'ota_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------- codes
CREATE TABLE codes (
    id          bigserial PRIMARY KEY,
    code_hash   bytea NOT NULL UNIQUE CHECK (octet_length(code_hash) = 32),
    amount      bigint NOT NULL CHECK (amount > 0),
    currency    text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    state       text NOT NULL DEFAULT 'issued'
                CHECK (state IN ('issued', 'reserved', 'used', 'revoked')),
    batch       text,
    card_uid    bytea CHECK (octet_length(card_uid) IN (4, 7, 10)),
    txn_id      uuid,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    reserved_at timestamptz,
    used_at     timestamptz,
    revoked_at  timestamptz,
    -- Each state carries exactly what it needs.
    CHECK (state <> 'issued' OR (txn_id IS NULL AND card_uid IS NULL AND reserved_at IS NULL
                                 AND used_at IS NULL)),
    CHECK (state <> 'reserved' OR (txn_id IS NOT NULL AND card_uid IS NOT NULL
                                   AND reserved_at IS NOT NULL AND used_at IS NULL)),
    CHECK (state <> 'used' OR (txn_id IS NOT NULL AND card_uid IS NOT NULL AND used_at IS NOT NULL)),
    CHECK (state <> 'revoked' OR (txn_id IS NULL AND revoked_at IS NOT NULL))
);
CREATE UNIQUE INDEX codes_txn_key ON codes (txn_id) WHERE txn_id IS NOT NULL;
CREATE INDEX codes_state_idx ON codes (state);

CREATE FUNCTION ota_codes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'codes are never deleted (revoke instead)' USING ERRCODE = 'P0001';
    END IF;
    IF NEW.id <> OLD.id OR NEW.code_hash <> OLD.code_hash OR NEW.amount <> OLD.amount
       OR NEW.currency <> OLD.currency OR NEW.issued_at <> OLD.issued_at THEN
        RAISE EXCEPTION 'a code''s identity, amount and currency never change' USING ERRCODE = 'P0001';
    END IF;
    IF NEW.state <> OLD.state AND NOT (
           (OLD.state = 'issued' AND NEW.state IN ('reserved', 'revoked'))
        OR (OLD.state = 'reserved' AND NEW.state IN ('used', 'issued'))) THEN
        RAISE EXCEPTION 'code % cannot move from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'P0001';
    END IF;
    -- A reserved or used code stays bound to its txn and card.
    IF OLD.state = 'reserved' AND NEW.state IN ('reserved', 'used')
       AND (NEW.txn_id IS DISTINCT FROM OLD.txn_id OR NEW.card_uid IS DISTINCT FROM OLD.card_uid) THEN
        RAISE EXCEPTION 'code % is bound to its transaction', OLD.id USING ERRCODE = 'P0001';
    END IF;
    IF OLD.state = 'used' AND (NEW.txn_id IS DISTINCT FROM OLD.txn_id
                               OR NEW.card_uid IS DISTINCT FROM OLD.card_uid
                               OR NEW.used_at IS DISTINCT FROM OLD.used_at) THEN
        RAISE EXCEPTION 'code % is used; it never changes again', OLD.id USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER codes_guard BEFORE UPDATE OR DELETE ON codes
    FOR EACH ROW EXECUTE FUNCTION ota_codes_guard();

-- ---------------------------------------------------------------- ledger
CREATE TABLE ledger (
    id         bigserial PRIMARY KEY,
    txn_id     uuid NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('reserved', 'committed', 'voided')),
    card_uid   bytea NOT NULL CHECK (octet_length(card_uid) IN (4, 7, 10)),
    amount     bigint NOT NULL CHECK (amount > 0),
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    code_hash  bytea REFERENCES codes (code_hash),
    code_id    bigint REFERENCES codes (id),
    peer       text,
    flags      integer NOT NULL DEFAULT 0 CHECK (flags >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (txn_id, kind)
);
-- committed and voided exclude each other, in the database itself.
CREATE UNIQUE INDEX ledger_one_final ON ledger (txn_id) WHERE kind IN ('committed', 'voided');
-- A code's value reaches a card at most once.
CREATE UNIQUE INDEX ledger_code_committed_once ON ledger (code_hash) WHERE kind = 'committed';
CREATE INDEX ledger_card_idx ON ledger (card_uid, id);
CREATE INDEX ledger_created_idx ON ledger (created_at);
CREATE INDEX ledger_code_idx ON ledger (code_id);

COMMENT ON COLUMN ledger.flags IS
    'bit 1: integrity failure after a command the card accepted; 2: read-back failed or '
    'disagreed; 4: settled by the record in a later session; 8: record present, credit '
    'looks missing (worker/ledger.h LEDGER_FLAG_*)';

-- Fills and checks what an entry must repeat; the worker passes only
-- txn, kind, card, amount, code hash, peer and flags.
CREATE FUNCTION ota_ledger_check_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c codes%ROWTYPE;
    r ledger%ROWTYPE;
BEGIN
    IF NEW.kind = 'reserved' THEN
        IF NEW.code_hash IS NULL THEN
            RAISE EXCEPTION 'a reserved entry needs its code' USING ERRCODE = 'P0001';
        END IF;
        SELECT * INTO c FROM codes WHERE code_hash = NEW.code_hash;
        IF NOT FOUND OR c.state <> 'reserved' OR c.txn_id IS DISTINCT FROM NEW.txn_id
           OR c.card_uid IS DISTINCT FROM NEW.card_uid THEN
            RAISE EXCEPTION 'txn %: its code is not reserved for this txn and card', NEW.txn_id
                USING ERRCODE = 'P0001';
        END IF;
        IF NEW.amount <> c.amount OR (NEW.currency IS NOT NULL AND NEW.currency <> c.currency) THEN
            RAISE EXCEPTION 'txn %: amount or currency differs from its code', NEW.txn_id
                USING ERRCODE = 'P0001';
        END IF;
        NEW.currency := c.currency;
        NEW.code_id := c.id;
    ELSE
        SELECT * INTO r FROM ledger WHERE txn_id = NEW.txn_id AND kind = 'reserved';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'txn %: a % entry needs a reserved entry', NEW.txn_id, NEW.kind
                USING ERRCODE = 'P0001';
        END IF;
        IF NEW.card_uid <> r.card_uid OR NEW.amount <> r.amount
           OR NEW.code_hash IS DISTINCT FROM r.code_hash
           OR (NEW.currency IS NOT NULL AND NEW.currency <> r.currency) THEN
            RAISE EXCEPTION 'txn %: the % entry differs from its reservation', NEW.txn_id, NEW.kind
                USING ERRCODE = 'P0001';
        END IF;
        NEW.currency := r.currency;
        NEW.code_id := r.code_id;
        IF NEW.kind = 'voided' AND NEW.flags <> 0 THEN
            NEW.flags := 0;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_check_insert BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ota_ledger_check_insert();

CREATE FUNCTION ota_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only (% refused)', TG_OP USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ota_ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ota_ledger_append_only();

-- Flags a session attached to an in-doubt txn before its final entry
-- exists (LEDGER_INTEGRITY_FAILURE with has_txn): CARD_STATE reports them
-- and the engine copies them into the final entry.  Flags only ever grow.
CREATE TABLE txn_flags (
    txn_id     uuid PRIMARY KEY,
    flags      integer NOT NULL CHECK (flags >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ota_txn_flags_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.flags & OLD.flags) <> OLD.flags OR NEW.txn_id <> OLD.txn_id THEN
        RAISE EXCEPTION 'txn flags only grow' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER txn_flags_guard BEFORE UPDATE OR DELETE ON txn_flags
    FOR EACH ROW EXECUTE FUNCTION ota_txn_flags_guard();

-- Adds flags to an in-doubt txn (one statement, idempotent); false if the
-- txn has no reserved entry of this card.
CREATE FUNCTION ota_txn_flag(p_uid bytea, p_txn uuid, p_flags integer)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    WITH r AS (SELECT 1 FROM ledger WHERE txn_id = p_txn AND kind = 'reserved' AND card_uid = p_uid),
         f AS (INSERT INTO txn_flags AS t (txn_id, flags)
               SELECT p_txn, p_flags FROM r
               ON CONFLICT (txn_id) DO UPDATE SET flags = t.flags | EXCLUDED.flags,
                                                   updated_at = now()
               RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM f)
$$;

-- ---------------------------------------------------------------- cards
CREATE TABLE cards (
    card_uid           bytea PRIMARY KEY CHECK (octet_length(card_uid) IN (4, 7, 10)),
    frozen             boolean NOT NULL DEFAULT false,
    frozen_reason      text,
    frozen_detail      text,
    frozen_at          timestamptz,
    integrity_failures integer NOT NULL DEFAULT 0 CHECK (integrity_failures >= 0),
    personalized_at    timestamptz,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT frozen OR frozen_at IS NOT NULL)
);

-- Every freeze and unfreeze, by whom and why.  Append-only.
CREATE TABLE card_events (
    id       bigserial PRIMARY KEY,
    card_uid bytea NOT NULL,
    event    text NOT NULL CHECK (event IN ('freeze', 'unfreeze')),
    reason   text NOT NULL,
    detail   text,
    actor    text NOT NULL DEFAULT session_user,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX card_events_card_idx ON card_events (card_uid, id);
CREATE TRIGGER card_events_no_update BEFORE UPDATE OR DELETE ON card_events
    FOR EACH ROW EXECUTE FUNCTION ota_ledger_append_only();

-- A freeze is recorded whoever sets it (the worker's ota_worker_freeze
-- only writes cards).  SECURITY DEFINER: the worker role needs no right on
-- card_events itself.
CREATE FUNCTION ota_cards_record_freeze() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.frozen AND (TG_OP = 'INSERT' OR NOT OLD.frozen) THEN
        INSERT INTO card_events (card_uid, event, reason, detail, actor)
        VALUES (NEW.card_uid, 'freeze', COALESCE(NEW.frozen_reason, 'unspecified'),
                NEW.frozen_detail, session_user);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cards_record_freeze AFTER INSERT OR UPDATE OF frozen ON cards
    FOR EACH ROW EXECUTE FUNCTION ota_cards_record_freeze();

-- An operator clears a freeze (ota-ctl cards unfreeze): one statement that
-- clears the card, resets its consecutive integrity failures and records
-- who and why.  Returns false if the card was not frozen.
CREATE FUNCTION ota_admin_unfreeze(p_uid bytea, p_reason text, p_actor text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'an unfreeze needs a reason' USING ERRCODE = 'P0001';
    END IF;
    UPDATE cards SET frozen = false, integrity_failures = 0
     WHERE card_uid = p_uid AND frozen;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO card_events (card_uid, event, reason, actor)
    VALUES (p_uid, 'unfreeze', p_reason, COALESCE(NULLIF(p_actor, ''), session_user));
    RETURN true;
END
$$;
REVOKE EXECUTE ON FUNCTION ota_admin_unfreeze(bytea, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ota_admin_unfreeze(bytea, text, text) TO ota_admin;

-- ---------------------------------------------------------------- leases
-- One session per card across every gateway and worker.  Acquire:
--   INSERT ... ON CONFLICT (card_uid) DO UPDATE ... WHERE expires_at <= now()
--   OR holder = EXCLUDED.holder RETURNING
CREATE TABLE card_leases (
    card_uid    bytea PRIMARY KEY CHECK (octet_length(card_uid) IN (4, 7, 10)),
    holder      bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- rate limits
CREATE TABLE code_failures (
    id       bigserial PRIMARY KEY,
    card_uid bytea,
    peer     text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX code_failures_card_idx ON code_failures (card_uid, at);
CREATE INDEX code_failures_peer_idx ON code_failures (peer, at) WHERE peer IS NOT NULL;

-- ---------------------------------------------------------------- grants
REVOKE ALL ON schema_migrations, codes, ledger, txn_flags, cards, card_events, card_leases,
    code_failures FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ota_worker, ota_finance, ota_admin;

-- The worker: append entries, move codes (only their state columns), its
-- leases, card state, failures.  It can neither issue a code nor change an
-- amount.
GRANT SELECT, INSERT ON ledger TO ota_worker;
GRANT SELECT ON codes TO ota_worker;
GRANT UPDATE (state, txn_id, card_uid, reserved_at, used_at) ON codes TO ota_worker;
GRANT SELECT, INSERT, UPDATE ON txn_flags TO ota_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON card_leases TO ota_worker;
GRANT SELECT, INSERT ON cards TO ota_worker;
GRANT UPDATE (frozen, frozen_reason, frozen_detail, frozen_at, integrity_failures, personalized_at)
    ON cards TO ota_worker;
GRANT SELECT, INSERT ON code_failures TO ota_worker;
GRANT USAGE ON SEQUENCE ledger_id_seq, code_failures_id_seq TO ota_worker;

-- The administrator (ota-ctl): issue and revoke codes, clear freezes,
-- prune old rate-limit rows, read everything.  Never UPDATE/DELETE the
-- ledger (the triggers refuse it anyway).
GRANT SELECT ON schema_migrations, ledger, txn_flags, card_leases TO ota_admin;
GRANT SELECT, INSERT, UPDATE ON codes TO ota_admin;
GRANT SELECT, INSERT, UPDATE ON cards TO ota_admin;
GRANT SELECT, INSERT ON card_events TO ota_admin;
GRANT SELECT, DELETE ON code_failures TO ota_admin;
GRANT USAGE ON SEQUENCE codes_id_seq, card_events_id_seq TO ota_admin;
-- ota_finance gets views only (002_finance.sql).
