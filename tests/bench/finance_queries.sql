-- finance_queries.sql: the read queries of `ota-ctl ledger|codes` (tools/
-- ctl_ledger.c, ctl_codes.c), of the workers' statistics (ota_worker_stats)
-- and of the audit, with typical arguments filled in the way a custom plan
-- sees them, each under EXPLAIN ANALYZE: for tests/bench/db_ab --sql, to see
-- on a preloaded ledger that none of them turns into a full scan of the
-- ledger where it did not scan before, and what each costs.  The cards,
-- codes and days are those tests/bench/db_ab --preload loads.
\set card '''0000000000012c'''
\pset pager off
SET TIME ZONE 'UTC';
\echo '## ledger show (newest 50)'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT txn_id, card_uid, amount, currency, code_id, state, day, flags FROM finance_transactions
 ORDER BY decided_at DESC, txn_id LIMIT 50;
\echo '## ledger show --card'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT txn_id, card_uid, amount, currency, code_id, state, day, flags FROM finance_transactions
 WHERE card_uid = :card ORDER BY decided_at DESC, txn_id LIMIT 50;
\echo '## ledger show --code'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT txn_id, card_uid, amount, currency, code_id, state, day, flags FROM finance_transactions
 WHERE code_id = 4242 ORDER BY decided_at DESC, txn_id LIMIT 50;
\echo '## ledger show --from --to (one day)'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT txn_id, card_uid, amount, currency, code_id, state, day, flags FROM finance_transactions
 WHERE decided_at >= now() - interval '3 days' AND decided_at < now() - interval '2 days'
 ORDER BY decided_at DESC, txn_id LIMIT 50;
\echo '## ledger daily --from --to (one month)'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT day, state, currency, transactions, amount FROM finance_daily_totals
 WHERE day >= (now() - interval '30 days')::date AND day < now()::date ORDER BY day, state, currency;
\echo '## ledger in-doubt'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT txn_id, card_uid, amount, currency, code_id, age_seconds, flags FROM finance_in_doubt
 ORDER BY reserved_at, txn_id;
\echo '## ledger liability --card'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT card_uid, currency, topups, committed_amount FROM finance_liability_per_card
 WHERE card_uid = :card;
\echo '## codes list (newest 100)'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT code_id, state, amount, currency, batch, txn_id, card_uid FROM finance_codes
 ORDER BY code_id DESC LIMIT 100;
\echo '## codes list --state reserved'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT code_id, state, amount, currency, batch, txn_id, card_uid FROM finance_codes
 WHERE state = 'reserved' ORDER BY code_id DESC LIMIT 100;
\echo '## ota_worker_stats (the workers, every few seconds)'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT * FROM ota_worker_stats(300);
\echo '## audit: finance_reconciliation'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
SELECT severity, finding, txn_id FROM finance_reconciliation;
