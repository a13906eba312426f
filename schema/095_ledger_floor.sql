-- 095_ledger_floor: the worker's hot statements at a cost that does not
-- grow with the data (issue 13).  Same requests, same signatures, same
-- answers as 090_worker_ledger.sql and 092_worker_integrity_flag.sql (the
-- in-doubt txns' flags); what changes is how they find rows.
--
-- * CARD_STATE found a card's entries in doubt by scanning every
--   `reserved` entry the card ever had (cost grew with its history: 7.7 ms
--   per call on a card with 1,300 top-ups).  A txn is open exactly while
--   its code is `reserved` for it: RESERVE moves the code and appends the
--   `reserved` entry in one transaction, SETTLE appends the final entry and
--   moves the code out in one transaction, and so does an operator's
--   `ota-ctl ledger resolve` (094) (the same fact 091's statistics rely
--   on).  So the open txns of a card are found through a partial
--   index over the reserved codes (a handful of rows whatever the size of
--   the tables), and each is confirmed against the ledger.  An entry whose
--   code was moved by hand is not seen here; finance_reconciliation
--   reports it ('open-txn-code-not-reserved') and ota-ctl audit fails on
--   it.  The committed history reads the newest entries of the card only.
-- * SETTLE can release the lease in the same statement
--   (ota_worker_settle_release): a top-up commits three times, not four.
-- * The functions are PL/pgSQL: PostgreSQL 15 plans the body of an SQL
--   function again on every call, PL/pgSQL keeps its plans per connection
--   (CARD_STATE keeps one generic plan: see below).
-- * codes_state_idx (every code, by state) becomes a partial index over the
--   reserved codes only, keyed by card: the statistics query counts the
--   same rows through it, and the index stays as small as the number of
--   open top-ups.  Frozen cards get a partial index for the same reason.
--
-- Every money guard of 001_base.sql stays as it is: the append-only
-- triggers, UNIQUE (txn_id, kind), one final entry per txn, a code
-- committed at most once, the insert trigger and the code state machine.
SET check_function_bodies = off;

CREATE INDEX codes_reserved_card_idx ON codes (card_uid) WHERE state = 'reserved';
DROP INDEX codes_state_idx;
CREATE INDEX cards_frozen_idx ON cards (card_uid) WHERE frozen;

CREATE OR REPLACE FUNCTION ota_worker_card_state(p_uid bytea, p_max_doubt integer,
                                                 p_max_committed integer)
RETURNS TABLE (kind text, frozen boolean, has_history boolean, integrity_failures bigint,
               txn_id uuid, amount bigint, flags integer, ord bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT 'card'::text, COALESCE(c.frozen, false),
           EXISTS (SELECT 1 FROM ledger l WHERE l.card_uid = p_uid),
           COALESCE(c.integrity_failures, 0)::bigint, NULL::uuid, NULL::bigint, NULL::integer,
           0::bigint
      FROM (SELECT 1) AS one LEFT JOIN cards c ON c.card_uid = p_uid
    UNION ALL
    SELECT 'in_doubt', NULL, NULL, NULL, d.txn_id, d.amount,
           COALESCE((SELECT t.flags FROM txn_flags t WHERE t.txn_id = d.txn_id), 0),
           1000000 + d.n
      FROM (SELECT r.txn_id, r.amount, row_number() OVER (ORDER BY r.id) AS n
              FROM codes o
              JOIN ledger r ON r.txn_id = o.txn_id AND r.kind = 'reserved'
             WHERE o.state = 'reserved' AND o.card_uid = p_uid AND r.card_uid = p_uid
               AND NOT EXISTS (SELECT 1 FROM ledger f
                                WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided'))
             ORDER BY r.id LIMIT p_max_doubt) AS d
    UNION ALL
    SELECT 'committed', NULL, NULL, NULL, k.txn_id, k.amount, NULL, 2000000 + k.n
      FROM (SELECT r.txn_id, r.amount, row_number() OVER (ORDER BY r.id DESC) AS n
              FROM ledger r
              JOIN ledger f ON f.txn_id = r.txn_id AND f.kind = 'committed'
             WHERE r.card_uid = p_uid AND r.kind = 'reserved'
             ORDER BY r.card_uid DESC, r.id DESC LIMIT p_max_committed) AS k;
END
$$;
-- One plan for every card: the custom plans PostgreSQL would otherwise
-- make for each call cost twice the execution itself (0.7 ms of planning).
-- The ORDER BY above follows ledger_card_idx so that generic plan walks
-- the card's newest entries, never the whole ledger.
ALTER FUNCTION ota_worker_card_state(bytea, integer, integer)
    SET plan_cache_mode = force_generic_plan;

CREATE OR REPLACE FUNCTION ota_worker_lease_acquire(p_uid bytea, p_holder bytea, p_ttl_ms integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO card_leases AS l (card_uid, holder, expires_at)
    VALUES (p_uid, p_holder, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (card_uid) DO UPDATE
        SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder;
    RETURN FOUND;
END
$$;

CREATE OR REPLACE FUNCTION ota_worker_lease_release(p_uid bytea, p_holder bytea)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM card_leases WHERE card_uid = p_uid AND holder = p_holder;
    RETURN true;
END
$$;

-- SETTLE with the lease release: the booking of a top-up and the end of
-- its session in one transaction, one round trip.  The lease goes only if
-- the settle answered 'ok' (a conflict leaves the card leased to the
-- session, which freezes it first and releases the lease last), and never
-- waits for it: if another transaction holds the lease row locked, the
-- booking commits without it and answers 'ok-held' (the worker releases
-- the lease on its own afterwards), so nothing delays the booking.
CREATE FUNCTION ota_worker_settle_release(p_uid bytea, p_txn uuid, p_outcome text,
                                          p_flags integer, p_holder bytea)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    st text := ota_worker_settle(p_uid, p_txn, p_outcome, p_flags);
BEGIN
    IF st = 'ok' THEN
        DELETE FROM card_leases
         WHERE ctid = (SELECT ctid FROM card_leases
                        WHERE card_uid = p_uid AND holder = p_holder
                          FOR UPDATE SKIP LOCKED);
        IF NOT FOUND AND EXISTS (SELECT 1 FROM card_leases
                                  WHERE card_uid = p_uid AND holder = p_holder) THEN
            RETURN 'ok-held';
        END IF;
    END IF;
    RETURN st;
END
$$;

CREATE OR REPLACE FUNCTION ota_worker_stats(p_old_s integer)
RETURNS TABLE (in_doubt bigint, in_doubt_old bigint, in_doubt_oldest_s bigint,
               codes_reserved bigint, cards_frozen bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    WITH d AS (
        SELECT r.created_at
          FROM codes c
          JOIN ledger r ON r.txn_id = c.txn_id AND r.kind = 'reserved'
         WHERE c.state = 'reserved'
           AND NOT EXISTS (SELECT 1 FROM ledger f
                            WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided')))
    SELECT (SELECT count(*) FROM d),
           (SELECT count(*) FROM d WHERE d.created_at < now() - p_old_s * interval '1 second'),
           COALESCE((SELECT greatest(0, floor(extract(epoch FROM now() - min(d.created_at))))::bigint
                       FROM d), 0),
           (SELECT count(*) FROM codes c WHERE c.state = 'reserved'),
           (SELECT count(*) FROM cards c WHERE c.frozen);
END
$$;

-- The audit's counterpart of CARD_STATE's lookup: the findings of
-- 002_finance.sql, and one more.
CREATE OR REPLACE VIEW finance_reconciliation AS
-- A final entry without its reservation (the insert trigger forbids it).
SELECT 'final-without-reserved' AS finding, 'violation' AS severity,
       f.txn_id, f.code_id, encode(f.card_uid, 'hex') AS card_uid,
       f.kind || ' entry has no reserved entry' AS detail
  FROM ledger f
 WHERE f.kind <> 'reserved'
   AND NOT EXISTS (SELECT 1 FROM ledger r WHERE r.txn_id = f.txn_id AND r.kind = 'reserved')
UNION ALL
-- committed and voided for one txn (a unique index forbids it).
SELECT 'committed-and-voided', 'violation', c.txn_id, c.code_id, encode(c.card_uid, 'hex'),
       'txn has both a committed and a voided entry'
  FROM ledger c JOIN ledger v ON v.txn_id = c.txn_id AND v.kind = 'voided'
 WHERE c.kind = 'committed'
UNION ALL
-- A final entry that does not repeat its reservation.
SELECT 'final-differs', 'violation', f.txn_id, f.code_id, encode(f.card_uid, 'hex'),
       'final entry differs from its reservation (card, amount, currency or code)'
  FROM ledger f JOIN ledger r ON r.txn_id = f.txn_id AND r.kind = 'reserved'
 WHERE f.kind <> 'reserved'
   AND (f.card_uid <> r.card_uid OR f.amount <> r.amount OR f.currency <> r.currency
        OR f.code_id IS DISTINCT FROM r.code_id)
UNION ALL
-- A used code needs exactly one committed entry, and it is its own txn's.
SELECT 'used-code-commits', 'violation', c.txn_id, c.id, encode(c.card_uid, 'hex'),
       format('used code has %s committed entries (of its txn: %s)',
              (SELECT count(*) FROM ledger l WHERE l.code_id = c.id AND l.kind = 'committed'),
              (SELECT count(*) FROM ledger l WHERE l.code_id = c.id AND l.kind = 'committed'
                                                AND l.txn_id = c.txn_id))
  FROM codes c
 WHERE c.state = 'used'
   AND ((SELECT count(*) FROM ledger l WHERE l.code_id = c.id AND l.kind = 'committed') <> 1
        OR NOT EXISTS (SELECT 1 FROM ledger l WHERE l.code_id = c.id AND l.kind = 'committed'
                                               AND l.txn_id = c.txn_id))
UNION ALL
-- A committed entry whose code is not marked used by that txn.
SELECT 'committed-code-not-used', 'violation', l.txn_id, l.code_id, encode(l.card_uid, 'hex'),
       format('committed txn''s code is %s', COALESCE(c.state, 'missing'))
  FROM ledger l LEFT JOIN codes c ON c.id = l.code_id
 WHERE l.kind = 'committed'
   AND (c.id IS NULL OR c.state <> 'used' OR c.txn_id IS DISTINCT FROM l.txn_id)
UNION ALL
-- A reserved code belongs to an open (in-doubt) txn of the same card.
SELECT 'reserved-code-not-open', 'violation', c.txn_id, c.id, encode(c.card_uid, 'hex'),
       CASE WHEN r.txn_id IS NULL THEN 'reserved code has no reserved entry'
            WHEN r.card_uid <> c.card_uid THEN 'reserved code and its entry name different cards'
            ELSE 'reserved code''s txn is already ' || f.kind END
  FROM codes c
  LEFT JOIN ledger r ON r.txn_id = c.txn_id AND r.kind = 'reserved'
  LEFT JOIN ledger f ON f.txn_id = c.txn_id AND f.kind IN ('committed', 'voided')
 WHERE c.state = 'reserved'
   AND (r.txn_id IS NULL OR r.card_uid <> c.card_uid OR f.txn_id IS NOT NULL)
UNION ALL
-- A voided txn released its code: the code is not used, nor still held, by it.
SELECT 'voided-code-held', 'violation', v.txn_id, v.code_id, encode(v.card_uid, 'hex'),
       'voided txn''s code is still ' || c.state || ' by it'
  FROM ledger v JOIN codes c ON c.id = v.code_id
 WHERE v.kind = 'voided' AND c.txn_id = v.txn_id AND c.state IN ('reserved', 'used')
UNION ALL
-- Committed entries flagged for review (ARCHITECTURE.md rules 2 and 8).
SELECT 'flagged', 'review', t.txn_id, t.code_id, t.card_uid,
       concat_ws(', ',
                 CASE WHEN t.flag_integrity THEN 'integrity failure after record' END,
                 CASE WHEN t.flag_readback THEN 'read-back failed or disagreed' END,
                 CASE WHEN t.flag_credit_missing THEN 'record present, credit looks missing' END)
  FROM finance_transactions t
 WHERE t.state = 'committed' AND (t.flag_integrity OR t.flag_readback OR t.flag_credit_missing)
UNION ALL
-- An open txn (a reserved entry without a final one) whose code is not
-- reserved by it: CARD_STATE finds open txns through their reserved codes
-- (095_ledger_floor.sql), so it would not see this one.
SELECT 'open-txn-code-not-reserved', 'violation', r.txn_id, r.code_id, encode(r.card_uid, 'hex'),
       format('open txn''s code is %s', COALESCE(c.state, 'missing'))
  FROM ledger r LEFT JOIN codes c ON c.id = r.code_id
 WHERE r.kind = 'reserved'
   AND NOT EXISTS (SELECT 1 FROM ledger f
                    WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided'))
   AND (c.id IS NULL OR c.state <> 'reserved' OR c.txn_id IS DISTINCT FROM r.txn_id
        OR c.card_uid IS DISTINCT FROM r.card_uid);
