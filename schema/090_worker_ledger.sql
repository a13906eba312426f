-- 090_worker_ledger: the worker role's ledger requests (worker/ledger.h) as
-- stored functions.  One call = one statement = one transaction, so each
-- request's atomicity lives in the database; worker/ledger_pg.c calls only
-- these.  They never UPDATE or DELETE a ledger row, never see a code (only
-- its HMAC hash) and rely on the constraints of the base schema:
--   ledger(id bigserial, txn_id uuid, kind text reserved|committed|voided,
--          card_uid bytea, amount bigint, code_hash bytea, peer text,
--          flags integer, created_at timestamptz), UNIQUE (txn_id, kind) and
--          a unique index on (txn_id) WHERE kind IN ('committed','voided'),
--          UPDATE/DELETE/TRUNCATE refused by trigger;
--   codes(code_hash bytea PK, amount bigint, state issued|reserved|used|revoked,
--         expires_at timestamptz, txn_id uuid, card_uid bytea,
--         reserved_at timestamptz, used_at timestamptz);
--   card_leases(card_uid bytea PK, holder bytea, expires_at timestamptz);
--   cards(card_uid bytea PK, frozen boolean, frozen_reason text,
--         frozen_detail text, frozen_at timestamptz,
--         integrity_failures integer, personalized_at timestamptz);
--   code_failures(id bigserial, card_uid bytea, peer text, at timestamptz).
-- Bodies are checked when called, not here, so this file does not depend
-- on the order in which the base migrations create those tables.
SET check_function_bodies = off;

-- LEASE_ACQUIRE: take or renew the card's lease unless another live holder has it.
CREATE FUNCTION ota_worker_lease_acquire(p_uid bytea, p_holder bytea, p_ttl_ms integer)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    WITH taken AS (
        INSERT INTO card_leases AS l (card_uid, holder, expires_at)
        VALUES (p_uid, p_holder, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
        ON CONFLICT (card_uid) DO UPDATE
            SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
            WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM taken)
$$;

-- LEASE_RELEASE: only the holder's own lease.
CREATE FUNCTION ota_worker_lease_release(p_uid bytea, p_holder bytea)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    WITH gone AS (DELETE FROM card_leases WHERE card_uid = p_uid AND holder = p_holder RETURNING 1)
    SELECT true
$$;

-- CARD_STATE: one statement, one snapshot.  Rows: one 'card' row, then the
-- oldest p_max_doubt in-doubt txns, then the newest p_max_committed
-- committed txns (newest first); `ord` gives that order.
CREATE FUNCTION ota_worker_card_state(p_uid bytea, p_max_doubt integer, p_max_committed integer)
RETURNS TABLE (kind text, frozen boolean, has_history boolean, integrity_failures bigint,
               txn_id uuid, amount bigint, ord bigint)
LANGUAGE sql STABLE AS $$
    SELECT 'card', COALESCE(c.frozen, false),
           EXISTS (SELECT 1 FROM ledger l WHERE l.card_uid = p_uid),
           COALESCE(c.integrity_failures, 0)::bigint, NULL::uuid, NULL::bigint, 0::bigint
      FROM (SELECT 1) AS one LEFT JOIN cards c ON c.card_uid = p_uid
    UNION ALL
    SELECT 'in_doubt', NULL, NULL, NULL, d.txn_id, d.amount, 1000000 + d.n
      FROM (SELECT r.txn_id, r.amount, row_number() OVER (ORDER BY r.id) AS n
              FROM ledger r
             WHERE r.card_uid = p_uid AND r.kind = 'reserved'
               AND NOT EXISTS (SELECT 1 FROM ledger f
                                WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided'))
             ORDER BY r.id LIMIT p_max_doubt) AS d
    UNION ALL
    SELECT 'committed', NULL, NULL, NULL, k.txn_id, k.amount, 2000000 + k.n
      FROM (SELECT r.txn_id, r.amount, row_number() OVER (ORDER BY r.id DESC) AS n
              FROM ledger r
              JOIN ledger f ON f.txn_id = r.txn_id AND f.kind = 'committed'
             WHERE r.card_uid = p_uid AND r.kind = 'reserved'
             ORDER BY r.id DESC LIMIT p_max_committed) AS k
$$;

-- SETTLE: append the final entry (idempotent) and move the code; 'ok' or
-- 'conflict' (the other final entry exists, or the txn is not this card's).
CREATE FUNCTION ota_worker_settle(p_uid bytea, p_txn uuid, p_outcome text, p_flags integer)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r ledger%ROWTYPE;
    existing text;
BEGIN
    IF p_outcome NOT IN ('committed', 'voided') THEN
        RAISE EXCEPTION 'bad outcome %', p_outcome;
    END IF;
    SELECT * INTO r FROM ledger WHERE ledger.txn_id = p_txn AND ledger.kind = 'reserved';
    IF NOT FOUND OR r.card_uid <> p_uid THEN
        RETURN 'conflict';
    END IF;
    INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash, peer, flags)
    VALUES (p_txn, p_outcome, p_uid, r.amount, r.code_hash, NULL,
            CASE WHEN p_outcome = 'committed' THEN p_flags ELSE 0 END)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        IF p_outcome = 'committed' THEN
            UPDATE codes SET state = 'used', used_at = now()
             WHERE code_hash = r.code_hash AND codes.txn_id = p_txn AND state = 'reserved';
        ELSE
            UPDATE codes SET state = 'issued', txn_id = NULL, card_uid = NULL, reserved_at = NULL
             WHERE code_hash = r.code_hash AND codes.txn_id = p_txn AND state = 'reserved';
        END IF;
        RETURN 'ok';
    END IF;
    SELECT f.kind INTO existing FROM ledger f
     WHERE f.txn_id = p_txn AND f.kind IN ('committed', 'voided');
    RETURN CASE WHEN existing = p_outcome THEN 'ok' ELSE 'conflict' END;
END
$$;

-- RESERVE: rate limits, then code issued -> reserved and the `reserved`
-- entry, all in this one call.
CREATE FUNCTION ota_worker_reserve(p_uid bytea, p_hash bytea, p_peer text, p_max_card integer,
                                   p_max_peer integer, p_window_s integer)
RETURNS TABLE (status text, txn_id uuid, amount bigint, unix_time bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    since timestamptz := now() - p_window_s * interval '1 second';
    v_txn uuid := gen_random_uuid();
    v_amount bigint;
    v_state text;
    v_expires timestamptz;
    v_at timestamptz;
BEGIN
    IF (SELECT count(*) FROM code_failures f WHERE f.card_uid = p_uid AND f.at > since) >= p_max_card
       OR (p_peer <> '' AND
           (SELECT count(*) FROM code_failures f WHERE f.peer = p_peer AND f.at > since) >= p_max_peer)
    THEN
        RETURN QUERY SELECT 'limit-exceeded', NULL::uuid, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    UPDATE codes c SET state = 'reserved', txn_id = v_txn, card_uid = p_uid, reserved_at = now()
     WHERE c.code_hash = p_hash AND c.state = 'issued'
       AND (c.expires_at IS NULL OR c.expires_at > now())
    RETURNING c.amount INTO v_amount;
    IF NOT FOUND THEN
        SELECT c.state, c.expires_at INTO v_state, v_expires FROM codes c WHERE c.code_hash = p_hash;
        IF NOT FOUND OR v_state = 'revoked' OR (v_state = 'issued' AND v_expires <= now()) THEN
            RETURN QUERY SELECT 'code-invalid', NULL::uuid, NULL::bigint, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 'code-used', NULL::uuid, NULL::bigint, NULL::bigint;
        END IF;
        RETURN;
    END IF;
    INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash, peer)
    VALUES (v_txn, 'reserved', p_uid, v_amount, p_hash, NULLIF(p_peer, ''))
    RETURNING created_at INTO v_at;
    RETURN QUERY SELECT 'ok', v_txn, v_amount, floor(extract(epoch FROM v_at))::bigint;
END
$$;

CREATE FUNCTION ota_worker_code_failure(p_uid bytea, p_peer text)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    INSERT INTO code_failures (card_uid, peer) VALUES (p_uid, NULLIF(p_peer, '')) RETURNING true
$$;

CREATE FUNCTION ota_worker_integrity_failure(p_uid bytea)
RETURNS integer LANGUAGE sql VOLATILE AS $$
    INSERT INTO cards AS c (card_uid, integrity_failures) VALUES (p_uid, 1)
    ON CONFLICT (card_uid) DO UPDATE SET integrity_failures = c.integrity_failures + 1
    RETURNING c.integrity_failures
$$;

CREATE FUNCTION ota_worker_integrity_reset(p_uid bytea)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    WITH z AS (UPDATE cards SET integrity_failures = 0
                WHERE card_uid = p_uid AND integrity_failures <> 0 RETURNING 1)
    SELECT true
$$;

CREATE FUNCTION ota_worker_freeze(p_uid bytea, p_reason text, p_detail text)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    WITH f AS (
        INSERT INTO cards AS c (card_uid, frozen, frozen_reason, frozen_detail, frozen_at)
        VALUES (p_uid, true, p_reason, p_detail, now())
        ON CONFLICT (card_uid) DO UPDATE
            SET frozen = true, frozen_reason = EXCLUDED.frozen_reason,
                frozen_detail = EXCLUDED.frozen_detail, frozen_at = EXCLUDED.frozen_at
            WHERE NOT c.frozen
        RETURNING 1)
    SELECT true
$$;

CREATE FUNCTION ota_worker_personalized(p_uid bytea)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    WITH p AS (
        INSERT INTO cards AS c (card_uid, personalized_at) VALUES (p_uid, now())
        ON CONFLICT (card_uid) DO UPDATE SET personalized_at = now()
            WHERE c.personalized_at IS NULL
        RETURNING 1)
    SELECT true
$$;
