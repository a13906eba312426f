-- 093_worker_reserve_valid_first: RESERVE looks the code up before the rate
-- limits, so a valid code is never refused by them (worker/ledger.h,
-- LEDGER_RESERVE).  Behind a carrier-grade NAT, a proxy or a kiosk fleet one
-- address is thousands of phones, and anyone who reaches a card for a
-- second can send wrong codes for it: with the limits first, a few wrong
-- codes locked every neighbour (or the card's holder) out for the window.
-- Codes carry 80 random bits, so the limits are not what stops guessing;
-- over a limit a wrong code answers 'limit-exceeded' and the worker delays
-- that answer (worker.code_failure_delay_ms): a throttle, not a lock-out.
-- The counts now run only for wrong codes, never on the path of a good one.
-- Same signature and result as 090, so callers do not change.
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
    v_state text;
    v_expires timestamptz;
    v_at timestamptz;
BEGIN
    UPDATE codes c SET state = 'reserved', txn_id = v_txn, card_uid = p_uid, reserved_at = now()
     WHERE c.code_hash = p_hash AND c.state = 'issued'
       AND (c.expires_at IS NULL OR c.expires_at > now())
    RETURNING c.amount INTO v_amount;
    IF FOUND THEN
        INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash, peer)
        VALUES (v_txn, 'reserved', p_uid, v_amount, p_hash, NULLIF(p_peer, ''))
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
