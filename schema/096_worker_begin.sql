-- 096_worker_begin: the start of a session as one statement (issue 13):
-- the card's lease, its ledger state and, for a top-up on a clean card,
-- the code's reservation, in one transaction (worker/ledger.h,
-- LEDGER_BEGIN).  A top-up then commits twice in the common case: this
-- call, and ota_worker_settle_release (095) with the verified commit.
--
-- Functions only: the tables, their constraints and triggers are those of
-- 001_base.sql and later migrations, and every money guard stays there.
-- The body calls the functions the worker called one by one before
-- (the lease of 095, ota_worker_card_state of 095, ota_worker_reserve of
-- 093), so each keeps its meaning; what changes is that they share one
-- transaction and one round trip:
--
--   1. the lease, taken only if free, expired or already ours; if another
--      live holder has it the answer is 'busy' and nothing else is done;
--   2. the card's state, read under that lease (one statement, one
--      snapshot): returned as ota_worker_card_state returns it;
--   3. only for a top-up (p_hash not NULL) on a card that state shows
--      neither frozen nor holding an entry in doubt: ota_worker_reserve,
--      with its statuses and rate limits unchanged.  The state returned
--      is the one before this reservation.  A card with entries in doubt
--      is not reserved for: the worker settles them from the card's
--      records first, then reserves with ota_worker_reserve.
--
-- Money: the reservation still comes before any card command that can
-- move money (the worker sends the WriteRecord only after this answered
-- 'ok').  If the session then fails before the WriteRecord went out, the
-- worker voids the reservation; if it cannot (cut off), the entry stays in
-- doubt and the card's next session voids it (no record with its txn on
-- the card).  If this call's answer is lost, the same holds.
--
-- Rows: one per ota_worker_card_state row (kind card / in_doubt /
-- committed, same columns, same ord), then one row of kind 'begin' (ord
-- 3000000: the last) with `status`: busy | leased (nothing reserved: a
-- check, a frozen card, entries in doubt) | ok (reserved: txn_id, amount,
-- unix_time) | code-invalid | code-used | limit-exceeded.  'busy' comes
-- alone.
SET check_function_bodies = off;

CREATE FUNCTION ota_worker_begin(p_uid bytea, p_holder bytea, p_ttl_ms integer,
                                 p_max_doubt integer, p_max_committed integer,
                                 p_hash bytea, p_peer text, p_max_card integer,
                                 p_max_peer integer, p_window_s integer)
RETURNS TABLE (kind text, frozen boolean, has_history boolean, integrity_failures bigint,
               txn_id uuid, amount bigint, flags integer, status text, unix_time bigint,
               ord bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    st record;
    res record;
    v_clean boolean := true;
BEGIN
    INSERT INTO card_leases AS l (card_uid, holder, expires_at)
    VALUES (p_uid, p_holder, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (card_uid) DO UPDATE
        SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'begin'::text, NULL::boolean, NULL::boolean, NULL::bigint, NULL::uuid,
                            NULL::bigint, NULL::integer, 'busy'::text, NULL::bigint, 3000000::bigint;
        RETURN;
    END IF;
    FOR st IN SELECT * FROM ota_worker_card_state(p_uid, p_max_doubt, p_max_committed) AS c
               ORDER BY c.ord LOOP
        kind := st.kind;
        frozen := st.frozen;
        has_history := st.has_history;
        integrity_failures := st.integrity_failures;
        txn_id := st.txn_id;
        amount := st.amount;
        flags := st.flags;
        status := NULL;
        unix_time := NULL;
        ord := st.ord;
        RETURN NEXT;
        IF (st.kind = 'card' AND st.frozen) OR st.kind = 'in_doubt' THEN
            v_clean := false;
        END IF;
    END LOOP;
    kind := 'begin';
    frozen := NULL;
    has_history := NULL;
    integrity_failures := NULL;
    txn_id := NULL;
    amount := NULL;
    flags := NULL;
    unix_time := NULL;
    ord := 3000000;
    IF p_hash IS NULL OR NOT v_clean THEN
        status := 'leased';
    ELSE
        SELECT * INTO res
          FROM ota_worker_reserve(p_uid, p_hash, COALESCE(p_peer, ''), p_max_card, p_max_peer,
                                  p_window_s);
        status := res.status;
        txn_id := res.txn_id;
        amount := res.amount;
        unix_time := res.unix_time;
    END IF;
    RETURN NEXT;
END
$$;
-- One plan for every card, like ota_worker_card_state (095): a custom
-- plan per call costs more than the call.
ALTER FUNCTION ota_worker_begin(bytea, bytea, integer, integer, integer, bytea, text, integer,
                                integer, integer)
    SET plan_cache_mode = force_generic_plan;
