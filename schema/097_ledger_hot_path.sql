-- 097_ledger_hot_path: what a top-up's rows cost the database, at its floor
-- (issue 13 item 1, the schema's side).  Tables, indexes and triggers only;
-- of the worker's functions only RESERVE and SETTLE change, and only in
-- what they write: each entry now carries the currency and code id they
-- have just read (the rows they insert are the same; 090's and 093's
-- bodies otherwise unchanged, same signatures and answers), so the insert
-- trigger no longer runs for them.  Every other function keeps working
-- unchanged on this schema.
--
-- Every guarantee that protects money stays IN the database:
--   * a code reaches a card at most once: the code state machine
--     (codes_guard), one txn per code (codes_txn_key) and one committed
--     entry per code (ledger_code_committed_once);
--   * one final entry per txn (ledger_one_final);
--   * idempotent retries: one entry of each kind per txn (ledger_one_final
--     and ledger_reserved_once below, see there);
--   * the append-only ledger (ledger_no_update, ledger_no_truncate);
--   * the lease (card_leases' primary key).
-- What goes is only what repeated them on every insert; `ota-ctl audit`
-- (finance_reconciliation, below) checks what each one checked, as a named
-- finding (FINANCE.md, "Reconciliation"; tests/integration/test_ctl.sh
-- provokes each):
--
-- * The two foreign keys ledger.code_hash and ledger.code_id -> codes
--   (an SPI lookup + a row lock on the code, per entry).  Safe: codes are
--   never deleted (codes_guard) and their hash and id never change, and
--   every writer of the ledger takes both values from the code row it has
--   just updated or from the reservation entry.  Finding:
--   `entry-code-missing`.
-- * The PL/pgSQL insert check ledger_check_insert runs only for an entry
--   whose writer left its currency or code id for the database to fill
--   (ota_admin_resolve does, and any writer of 090-095's shape: for them
--   it fills and checks exactly as before).  A writer that passes both
--   (RESERVE and SETTLE below: they have just read them from the code row
--   they updated or from the reservation) skips the trigger call.  Safe: the money
--   rules it repeated are held by the unique indexes and the code state
--   machine above; a reservation that disagrees with its code, or a final
--   entry with its reservation, can no longer move value twice, only be
--   booked wrong, and the audit names it: `reserved-differs-from-code`,
--   `final-without-reserved`, `final-differs` (now also the code hash).
-- * UNIQUE (txn_id, kind) becomes ledger_reserved_once, unique (txn_id)
--   over the `reserved` entries only.  Safe: ledger_one_final already
--   makes (txn_id) unique over the final entries, which is stronger than
--   (txn_id, kind) for `committed` and `voided`; together the two partial
--   indexes allow exactly what UNIQUE (txn_id, kind) allowed, and each
--   entry maintains one of them instead of two.  ON CONFLICT DO NOTHING
--   (090's SETTLE) works with either.
-- * ledger_code_idx (every entry, by code id) becomes partial over the
--   `reserved` entries (finance_transactions' code_id, `ota-ctl ledger
--   show --code`, is the reservation's); the audit joins the rest.
-- * ledger_created_idx (a B-tree on created_at that no query of the
--   system reads; finance selects on decided_at) becomes a BRIN index:
--   the ledger is appended in time order, so a range of created_at still
--   finds its pages, at almost no cost per insert.
-- * card_leases gets fillfactor 50: renewing a lease (holder, expires_at;
--   neither indexed) is then a HOT update on its page.  The code row's
--   updates cannot be HOT in PostgreSQL 15: RESERVE sets txn_id
--   (codes_txn_key, a money guarantee) and SETTLE changes state, which
--   codes_reserved_card_idx's predicate reads (the index that keeps
--   CARD_STATE's cost independent of a card's history; an index without
--   that predicate makes SETTLE HOT, and halved one backend's CPU per
--   booking in tests/bench/db_ab, but CARD_STATE and ota_worker_stats
--   would then read every code ever used: 100 times slower statistics
--   with 100,000 codes).
--
-- Measured and kept (tests/bench/db_ab, OPERATIONS.md "Database cost per
-- top-up"): the append-only triggers stay row triggers (they fire only for
-- UPDATE and DELETE, which never happen, and cost an INSERT nothing); the
-- code state machine stays the PL/pgSQL trigger codes_guard (the same
-- rules as a trigger WHEN condition cost more: PostgreSQL 15 rebuilds a
-- WHEN expression for every statement, and each update here is a
-- statement of its own).

ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_code_hash_fkey;
ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_code_id_fkey;

DROP TRIGGER ledger_check_insert ON ledger;
CREATE TRIGGER ledger_check_insert BEFORE INSERT ON ledger
    FOR EACH ROW WHEN (NEW.currency IS NULL OR NEW.code_id IS NULL)
    EXECUTE FUNCTION ota_ledger_check_insert();

CREATE UNIQUE INDEX ledger_reserved_once ON ledger (txn_id) WHERE kind = 'reserved';
ALTER TABLE ledger DROP CONSTRAINT ledger_txn_id_kind_key;

CREATE INDEX ledger_reserved_code_idx ON ledger (code_id) WHERE kind = 'reserved';
DROP INDEX ledger_code_idx;

CREATE INDEX ledger_created_brin ON ledger USING brin (created_at);
DROP INDEX ledger_created_idx;

ALTER TABLE card_leases SET (fillfactor = 50);

-- RESERVE (093) and SETTLE (090): the same bodies, each INSERT with the
-- currency and code id of the code row just updated (RESERVE) or of the
-- reservation (SETTLE).  The WHEN condition of ledger_check_insert then
-- skips the trigger for them.
SET check_function_bodies = off;

CREATE OR REPLACE FUNCTION ota_worker_reserve(p_uid bytea, p_hash bytea, p_peer text,
                                              p_max_card integer, p_max_peer integer,
                                              p_window_s integer)
RETURNS TABLE (status text, txn_id uuid, amount bigint, unix_time bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    since timestamptz := now() - p_window_s * interval '1 second';
    v_txn uuid := gen_random_uuid();
    v_amount bigint;
    v_currency text;
    v_code_id bigint;
    v_state text;
    v_expires timestamptz;
    v_at timestamptz;
BEGIN
    UPDATE codes c SET state = 'reserved', txn_id = v_txn, card_uid = p_uid, reserved_at = now()
     WHERE c.code_hash = p_hash AND c.state = 'issued'
       AND (c.expires_at IS NULL OR c.expires_at > now())
    RETURNING c.amount, c.currency, c.id INTO v_amount, v_currency, v_code_id;
    IF FOUND THEN
        INSERT INTO ledger (txn_id, kind, card_uid, amount, currency, code_hash, code_id, peer)
        VALUES (v_txn, 'reserved', p_uid, v_amount, v_currency, p_hash, v_code_id, NULLIF(p_peer, ''))
        RETURNING created_at INTO v_at;
        RETURN QUERY SELECT 'ok', v_txn, v_amount, floor(extract(epoch FROM v_at))::bigint;
        RETURN;
    END IF;
    -- A wrong code: over a limit, throttled.
    IF (SELECT count(*) FROM code_failures f WHERE f.card_uid = p_uid AND f.at > since) >= p_max_card
       OR (p_peer <> '' AND
           (SELECT count(*) FROM code_failures f WHERE f.peer = p_peer AND f.at > since) >= p_max_peer)
    THEN
        RETURN QUERY SELECT 'limit-exceeded', NULL::uuid, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT c.state, c.expires_at INTO v_state, v_expires FROM codes c WHERE c.code_hash = p_hash;
    IF NOT FOUND OR v_state = 'revoked' OR (v_state = 'issued' AND v_expires <= now()) THEN
        RETURN QUERY SELECT 'code-invalid', NULL::uuid, NULL::bigint, NULL::bigint;
    ELSE
        RETURN QUERY SELECT 'code-used', NULL::uuid, NULL::bigint, NULL::bigint;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ota_worker_settle(p_uid bytea, p_txn uuid, p_outcome text, p_flags integer)
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
    INSERT INTO ledger (txn_id, kind, card_uid, amount, currency, code_hash, code_id, peer, flags)
    VALUES (p_txn, p_outcome, p_uid, r.amount, r.currency, r.code_hash, r.code_id, NULL,
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


-- The audit: the findings of 095_ledger_floor.sql, with the checks the
-- foreign keys and the insert trigger made on every entry.  Each finding
-- reads the ledger once (hash joins), so a full audit of ten million
-- entries is a few scans, not a lookup per row.
CREATE OR REPLACE VIEW finance_reconciliation AS
-- A final entry without its reservation (the insert trigger forbids it
-- when it runs).
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
        OR f.code_id IS DISTINCT FROM r.code_id OR f.code_hash IS DISTINCT FROM r.code_hash)
UNION ALL
-- An entry whose code does not exist, or whose code id and code hash name
-- different codes (the foreign keys forbade the first).
SELECT 'entry-code-missing', 'violation', l.txn_id, l.code_id, encode(l.card_uid, 'hex'),
       l.kind || CASE WHEN l.code_hash IS NULL OR l.code_id IS NULL THEN ' entry names no code'
                      WHEN h.id IS NULL OR i.id IS NULL THEN ' entry''s code does not exist'
                      ELSE ' entry''s code id and code hash name different codes' END
  FROM ledger l
  LEFT JOIN codes h ON h.code_hash = l.code_hash
  LEFT JOIN codes i ON i.id = l.code_id
 WHERE l.code_hash IS NULL OR l.code_id IS NULL OR h.id IS NULL OR i.id IS NULL OR h.id <> i.id
UNION ALL
-- A reservation that does not carry its code's amount and currency, or
-- names another card than the code bound to its txn (the insert trigger
-- forbade both when it ran).
SELECT 'reserved-differs-from-code', 'violation', r.txn_id, r.code_id, encode(r.card_uid, 'hex'),
       CASE WHEN r.amount <> c.amount OR r.currency <> c.currency
            THEN format('reserved entry is %s %s, its code %s %s', r.amount, r.currency,
                        c.amount, c.currency)
            ELSE 'reserved entry and its code name different cards' END
  FROM ledger r JOIN codes c ON c.id = r.code_id
 WHERE r.kind = 'reserved'
   AND (r.amount <> c.amount OR r.currency <> c.currency
        OR (c.txn_id = r.txn_id AND c.card_uid IS DISTINCT FROM r.card_uid))
UNION ALL
-- A used code needs exactly one committed entry, and it is its own txn's
-- (two anti/semi joins on the code hash, ledger_code_committed_once).
SELECT 'used-code-commits', 'violation', c.txn_id, c.id, encode(c.card_uid, 'hex'),
       'used code has no committed entry of its own txn'
  FROM codes c
 WHERE c.state = 'used'
   AND NOT EXISTS (SELECT 1 FROM ledger l
                    WHERE l.code_hash = c.code_hash AND l.kind = 'committed' AND l.txn_id = c.txn_id)
UNION ALL
SELECT 'used-code-commits', 'violation', c.txn_id, c.id, encode(c.card_uid, 'hex'),
       'used code has a committed entry of another txn'
  FROM codes c
 WHERE c.state = 'used'
   AND EXISTS (SELECT 1 FROM ledger l
                WHERE l.code_hash = c.code_hash AND l.kind = 'committed'
                  AND l.txn_id IS DISTINCT FROM c.txn_id)
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
