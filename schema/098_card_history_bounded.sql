-- 098_card_history_bounded: a card's session start costs the same however
-- many top-ups the card has had (issue 13 item 4, per card).
--
-- CARD_STATE (and BEGIN, which calls it) lists the card's newest committed
-- txns (LEDGER_MAX_COMMITTED of them, to match against the records on the
-- card).  095 found them by reading every `reserved` entry of the card
-- (ledger_card_idx, a bitmap scan: the plan is generic), probing each for
-- its committed entry, sorting, and keeping 8: a card topped up weekly for
-- ten years read 500 entries at every tap (tests/bench/db_ab, 8 cards with
-- a few hundred top-ups each: 31 ms of executor time per BEGIN, nearly
-- all of it here).  Now the newest committed entries come straight off a
-- partial index, newest first, and only those are joined to their
-- reservations.
--
-- Same answer: the rows are the same txns with the reservation's amount,
-- numbered in the reservation's order.  The newest committed entries of a
-- card are the committed entries of its newest committed reservations
-- because a card's txns are settled in the order they were reserved: a
-- reservation is only made on a card with nothing in doubt (BEGIN, and
-- the engine's separate RESERVE after it settled every in-doubt txn), and
-- `ota-ctl ledger resolve` is refused while the card is leased.
--
-- Cost: one more index entry per committed entry (card_uid, id: 15-20
-- bytes).  Building it reads the ledger once and blocks ledger writes
-- meanwhile (about 10 s per 10 million entries on the benchmark VM): run
-- `ota-ctl db migrate` in a quiet hour.
CREATE INDEX ledger_card_committed_idx ON ledger (card_uid, id) WHERE kind = 'committed';

SET check_function_bodies = off;

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
              FROM (SELECT f.txn_id FROM ledger f
                     WHERE f.card_uid = p_uid AND f.kind = 'committed'
                     ORDER BY f.card_uid DESC, f.id DESC LIMIT p_max_committed) AS f
              JOIN ledger r ON r.txn_id = f.txn_id AND r.kind = 'reserved'
             WHERE r.card_uid = p_uid
             ORDER BY r.id DESC) AS k;
END
$$;
ALTER FUNCTION ota_worker_card_state(bytea, integer, integer)
    SET plan_cache_mode = force_generic_plan;
