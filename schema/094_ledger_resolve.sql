-- 094_ledger_resolve: an operator decides an entry in doubt whose card
-- never comes back (`ota-ctl ledger resolve TXN --committed|--voided
-- --reason TEXT`; FINANCE.md says when).
--
-- Recorded like an unfreeze: who, when and why, in an append-only table,
-- in the same transaction as the final entry.  The money rules are the
-- worker's own SETTLE (schema/090): committed -> the code becomes `used`;
-- voided -> the code goes back to `issued` (released: its holder may use it
-- again; revoke it with `ota-ctl codes revoke` if it must die).  Never on an
-- entry that already has its final entry (the unique index ledger_one_final
-- makes that hold against a racing worker too), never while a session holds
-- the card's lease (that session may be settling it right now).  The ledger
-- stays append-only: this only INSERTs.
CREATE TABLE ledger_resolutions (
    txn_id   uuid PRIMARY KEY,
    outcome  text NOT NULL CHECK (outcome IN ('committed', 'voided')),
    reason   text NOT NULL CHECK (btrim(reason) <> ''),
    actor    text NOT NULL,
    db_user  text NOT NULL DEFAULT session_user,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER ledger_resolutions_no_update BEFORE UPDATE OR DELETE ON ledger_resolutions
    FOR EACH ROW EXECUTE FUNCTION ota_ledger_append_only();
CREATE TRIGGER ledger_resolutions_no_truncate BEFORE TRUNCATE ON ledger_resolutions
    FOR EACH STATEMENT EXECUTE FUNCTION ota_ledger_append_only();
REVOKE ALL ON ledger_resolutions FROM PUBLIC;
GRANT SELECT ON ledger_resolutions TO ota_admin;

-- SECURITY DEFINER: ota_admin may not INSERT into the ledger itself; this
-- one function may, with exactly these checks.  Raises (SQLSTATE P0001) with
-- a message for the operator when it refuses; returns the card (hex).
CREATE FUNCTION ota_admin_resolve(p_txn uuid, p_outcome text, p_reason text, p_actor text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    r ledger%ROWTYPE;
    existing text;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a resolution needs a reason' USING ERRCODE = 'P0001';
    END IF;
    IF p_outcome IS NULL OR p_outcome NOT IN ('committed', 'voided') THEN
        RAISE EXCEPTION 'the outcome is committed or voided' USING ERRCODE = 'P0001';
    END IF;
    SELECT * INTO r FROM ledger WHERE txn_id = p_txn AND kind = 'reserved';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no transaction %', p_txn USING ERRCODE = 'P0001';
    END IF;
    SELECT kind INTO existing FROM ledger WHERE txn_id = p_txn AND kind IN ('committed', 'voided');
    IF FOUND THEN
        RAISE EXCEPTION 'transaction % is already %; nothing to resolve', p_txn, existing
            USING ERRCODE = 'P0001';
    END IF;
    IF EXISTS (SELECT 1 FROM card_leases
                WHERE card_uid = r.card_uid AND expires_at > clock_timestamp()) THEN
        RAISE EXCEPTION 'the card of transaction % is in a session now; try again later', p_txn
            USING ERRCODE = 'P0001';
    END IF;
    BEGIN
        INSERT INTO ledger (txn_id, kind, card_uid, amount, code_hash, peer, flags)
        VALUES (p_txn, p_outcome, r.card_uid, r.amount, r.code_hash, NULL,
                CASE WHEN p_outcome = 'committed'
                     THEN COALESCE((SELECT t.flags FROM txn_flags t WHERE t.txn_id = p_txn), 0)
                     ELSE 0 END);
    EXCEPTION WHEN unique_violation THEN
        -- A worker settled it a moment ago (ledger_one_final).
        RAISE EXCEPTION 'transaction % was just settled; nothing to resolve', p_txn
            USING ERRCODE = 'P0001';
    END;
    IF p_outcome = 'committed' THEN
        UPDATE codes SET state = 'used', used_at = now()
         WHERE code_hash = r.code_hash AND txn_id = p_txn AND state = 'reserved';
    ELSE
        UPDATE codes SET state = 'issued', txn_id = NULL, card_uid = NULL, reserved_at = NULL
         WHERE code_hash = r.code_hash AND txn_id = p_txn AND state = 'reserved';
    END IF;
    INSERT INTO ledger_resolutions (txn_id, outcome, reason, actor)
    VALUES (p_txn, p_outcome, p_reason, COALESCE(NULLIF(p_actor, ''), session_user));
    RETURN encode(r.card_uid, 'hex');
END
$$;
REVOKE EXECUTE ON FUNCTION ota_admin_resolve(uuid, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ota_admin_resolve(uuid, text, text, text) TO ota_admin;

-- Finance sees every resolution with its transaction (never a code hash).
CREATE VIEW finance_resolutions AS
SELECT x.txn_id, t.card_uid, t.amount, t.currency, x.outcome, x.reason, x.actor, x.db_user,
       x.at AS resolved_at, t.reserved_at, t.flags
  FROM ledger_resolutions x
  JOIN finance_transactions t ON t.txn_id = x.txn_id;
GRANT SELECT ON finance_resolutions TO ota_finance, ota_admin;
