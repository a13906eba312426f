-- 092_worker_integrity_flag: the flag "integrity failure after the record"
-- (LEDGER_FLAG_INTEGRITY, ledger.flags bit 1) reaches the database and
-- comes back.
--
-- INTEGRITY_FAILURE carries the in-doubt txn that was at risk when the card
-- answered wrongly (worker/ledger.h); the old ota_worker_integrity_failure
-- took only the card, so txn_flags was never written.  CARD_STATE now
-- returns each in-doubt txn's flags from txn_flags, and the engine copies
-- them into the final entry (ARCHITECTURE.md rule 2).
SET check_function_bodies = off;

DROP FUNCTION ota_worker_integrity_failure(bytea);

-- Counts one integrity failure of the card and, with p_txn, flags that
-- in-doubt txn of this card (ota_txn_flag: idempotent, flags only grow).
-- Returns the card's new consecutive count.
CREATE FUNCTION ota_worker_integrity_failure(p_uid bytea, p_txn uuid)
RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer;
BEGIN
    IF p_txn IS NOT NULL THEN
        PERFORM ota_txn_flag(p_uid, p_txn, 1);
    END IF;
    INSERT INTO cards AS c (card_uid, integrity_failures) VALUES (p_uid, 1)
    ON CONFLICT (card_uid) DO UPDATE SET integrity_failures = c.integrity_failures + 1
    RETURNING c.integrity_failures INTO n;
    RETURN n;
END
$$;

DROP FUNCTION ota_worker_card_state(bytea, integer, integer);

-- As in 090, plus `flags`: the txn_flags of each in-doubt txn (0 if none;
-- NULL on the other rows).
CREATE FUNCTION ota_worker_card_state(p_uid bytea, p_max_doubt integer, p_max_committed integer)
RETURNS TABLE (kind text, frozen boolean, has_history boolean, integrity_failures bigint,
               txn_id uuid, amount bigint, flags integer, ord bigint)
LANGUAGE sql STABLE AS $$
    SELECT 'card', COALESCE(c.frozen, false),
           EXISTS (SELECT 1 FROM ledger l WHERE l.card_uid = p_uid),
           COALESCE(c.integrity_failures, 0)::bigint, NULL::uuid, NULL::bigint, NULL::integer,
           0::bigint
      FROM (SELECT 1) AS one LEFT JOIN cards c ON c.card_uid = p_uid
    UNION ALL
    SELECT 'in_doubt', NULL, NULL, NULL, d.txn_id, d.amount,
           COALESCE((SELECT t.flags FROM txn_flags t WHERE t.txn_id = d.txn_id), 0),
           1000000 + d.n
      FROM (SELECT r.txn_id, r.amount, row_number() OVER (ORDER BY r.id) AS n
              FROM ledger r
             WHERE r.card_uid = p_uid AND r.kind = 'reserved'
               AND NOT EXISTS (SELECT 1 FROM ledger f
                                WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided'))
             ORDER BY r.id LIMIT p_max_doubt) AS d
    UNION ALL
    SELECT 'committed', NULL, NULL, NULL, k.txn_id, k.amount, NULL, 2000000 + k.n
      FROM (SELECT r.txn_id, r.amount, row_number() OVER (ORDER BY r.id DESC) AS n
              FROM ledger r
              JOIN ledger f ON f.txn_id = r.txn_id AND f.kind = 'committed'
             WHERE r.card_uid = p_uid AND r.kind = 'reserved'
             ORDER BY r.id DESC LIMIT p_max_committed) AS k
$$;
