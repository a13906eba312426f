-- 091_worker_stats: the database-wide numbers each ota-worker reads every
-- few seconds for the gateways' /metrics (gateway/wmetrics.c): entries in
-- doubt, codes reserved, frozen cards.  Read-only, with the worker role's
-- own SELECT rights; it never returns a row of the ledger, only counts.
--
-- In doubt = a `reserved` ledger entry without a final entry.  The count
-- starts from the codes in state `reserved` (codes_state_idx) and checks
-- each one's ledger entries by txn_id, so its cost follows the number of
-- open top-ups, not the size of the ledger: RESERVE moves the code to
-- `reserved` and appends the entry in one transaction, SETTLE appends the
-- final entry and moves the code out in one transaction.  A reserved entry
-- whose code was moved by hand is not counted here; `ota-ctl audit`
-- reports that inconsistency.
SET check_function_bodies = off;

CREATE FUNCTION ota_worker_stats(p_old_s integer)
RETURNS TABLE (in_doubt bigint, in_doubt_old bigint, in_doubt_oldest_s bigint,
               codes_reserved bigint, cards_frozen bigint)
LANGUAGE sql STABLE AS $$
    WITH d AS (
        SELECT r.created_at
          FROM codes c
          JOIN ledger r ON r.txn_id = c.txn_id AND r.kind = 'reserved'
         WHERE c.state = 'reserved'
           AND NOT EXISTS (SELECT 1 FROM ledger f
                            WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided')))
    SELECT (SELECT count(*) FROM d),
           (SELECT count(*) FROM d WHERE created_at < now() - p_old_s * interval '1 second'),
           COALESCE((SELECT greatest(0, floor(extract(epoch FROM now() - min(created_at))))::bigint FROM d), 0),
           (SELECT count(*) FROM codes WHERE state = 'reserved'),
           (SELECT count(*) FROM cards WHERE frozen)
$$;
