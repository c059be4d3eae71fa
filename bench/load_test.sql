-- The request's load test: `pgbench -f load_test.sql -c 10 -j 4 -t 1000` = 10,000 contacts created
-- through the app path. Each transaction is what PostgREST runs for a signed-in user's insert: the
-- role and the JWT claims for the transaction, then the INSERT; the triggers stamp the owner
-- (created_by = auth.uid()), version the row, write the audit row and queue the create for Keap.
-- bench/bench_load_test.py seeds the users (:users of them, ids 00000000-0000-4000-8000-<n>) and runs it.
\set u random(1, :users)
BEGIN;
SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', json_build_object('sub', '00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'), 'role', 'authenticated')::text, true);
INSERT INTO public.sync_contacts (email, first_name, last_name, phone, company, tags, custom_fields)
VALUES ('lt-' || gen_random_uuid() || '@example.test', 'Load', 'Test ' || :client_id, '+1 555 0100', 'Load Test Co',
        '[{"id": 1, "name": "load"}]', '{"source": "pgbench"}');
COMMIT;
