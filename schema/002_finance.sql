-- 002_finance: the ledger as finance reads it, through the read-only role
-- ota_finance (views only, never a raw table).
--
-- No view here may ever show a code hash (a copied hash plus a leaked HMAC
-- key is a usable code), a lease holder or a rate-limit row.  Amounts are
-- bigint in the smallest currency unit, with the currency next to them;
-- times are timestamptz (read them in UTC: SET TIME ZONE 'UTC').  Days are
-- UTC calendar days.  FINANCE.md explains every view.

-- One row per transaction: its reservation, its final entry if any, and
-- the state that follows (committed | voided | in_doubt).  decided_at is
-- the instant that decided the state (settled_at, or reserved_at while in
-- doubt) and day its UTC day: the day the transaction counts on in
-- finance_daily_totals, and what a report for a period selects on.
CREATE VIEW finance_transactions AS
SELECT r.txn_id,
       encode(r.card_uid, 'hex') AS card_uid,
       r.amount,
       r.currency,
       r.code_id,
       COALESCE(f.kind, 'in_doubt') AS state,
       r.created_at AS reserved_at,
       f.created_at AS settled_at,
       COALESCE(f.created_at, r.created_at) AS decided_at,
       (COALESCE(f.created_at, r.created_at) AT TIME ZONE 'UTC')::date AS day,
       COALESCE(f.flags, 0) | COALESCE(t.flags, 0) AS flags,
       (COALESCE(f.flags, 0) | COALESCE(t.flags, 0)) & 1 <> 0 AS flag_integrity,
       COALESCE(f.flags, 0) & 2 <> 0 AS flag_readback,
       COALESCE(f.flags, 0) & 4 <> 0 AS flag_settled_later,
       COALESCE(f.flags, 0) & 8 <> 0 AS flag_credit_missing
  FROM ledger r
  LEFT JOIN ledger f ON f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided')
  LEFT JOIN txn_flags t ON t.txn_id = r.txn_id
 WHERE r.kind = 'reserved';

-- Transactions whose card may or may not have the value, oldest first;
-- the card's next session settles each one.
CREATE VIEW finance_in_doubt AS
SELECT txn_id, card_uid, amount, currency, code_id, reserved_at, flags,
       now() - reserved_at AS age,
       floor(extract(epoch FROM now() - reserved_at))::bigint AS age_seconds
  FROM finance_transactions
 WHERE state = 'in_doubt';

-- Per UTC day and state: a transaction counts on the day that decided its
-- state (settled_at for committed / voided, reserved_at while in doubt).
CREATE VIEW finance_daily_totals AS
SELECT day,
       state,
       currency,
       count(*) AS transactions,
       sum(amount)::bigint AS amount
  FROM finance_transactions
 GROUP BY 1, 2, 3;

-- Outstanding liability: value committed to cards (what cardholders can
-- spend), per card and in total.  Debits at terminals are not seen here.
CREATE VIEW finance_liability_per_card AS
SELECT card_uid, currency,
       count(*) AS topups,
       sum(amount)::bigint AS committed_amount,
       min(settled_at) AS first_topup_at,
       max(settled_at) AS last_topup_at
  FROM finance_transactions
 WHERE state = 'committed'
 GROUP BY card_uid, currency;

CREATE VIEW finance_liability_total AS
SELECT currency,
       count(*) AS cards,
       sum(topups)::bigint AS topups,
       sum(committed_amount)::bigint AS committed_amount
  FROM finance_liability_per_card
 GROUP BY currency;

-- Codes without their hashes.  `expired` is an issued code past its expiry
-- (it can no longer be reserved).
CREATE VIEW finance_codes AS
SELECT c.id AS code_id,
       CASE WHEN c.state = 'issued' AND c.expires_at IS NOT NULL AND c.expires_at <= now()
            THEN 'expired' ELSE c.state END AS state,
       c.amount, c.currency, c.batch,
       c.issued_at, c.expires_at, c.reserved_at, c.used_at, c.revoked_at,
       c.txn_id,
       encode(c.card_uid, 'hex') AS card_uid
  FROM codes c;

CREATE VIEW finance_codes_by_state AS
SELECT state, currency, count(*) AS codes, sum(amount)::bigint AS amount
  FROM finance_codes
 GROUP BY state, currency;

-- Every disagreement the database can see, one row per finding.  `finding`
-- names the rule; `severity` is 'violation' (an invariant broke: money may
-- be wrong) or 'review' (a flagged entry a person should look at).
-- ota-ctl audit reads this view and fails on any violation.
CREATE VIEW finance_reconciliation AS
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
 WHERE t.state = 'committed' AND (t.flag_integrity OR t.flag_readback OR t.flag_credit_missing);

-- Cards that get no top-up until an operator clears them.
CREATE VIEW finance_frozen_cards AS
SELECT encode(card_uid, 'hex') AS card_uid, frozen_reason, frozen_detail, frozen_at,
       integrity_failures
  FROM cards
 WHERE frozen;

-- The history of freezes and unfreezes (who and why).
CREATE VIEW finance_card_events AS
SELECT id, encode(card_uid, 'hex') AS card_uid, event, reason, detail, actor, at
  FROM card_events;

GRANT SELECT ON finance_transactions, finance_in_doubt, finance_daily_totals,
    finance_liability_per_card, finance_liability_total, finance_codes, finance_codes_by_state,
    finance_reconciliation, finance_frozen_cards, finance_card_events
    TO ota_finance, ota_admin;
