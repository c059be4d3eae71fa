-- An app user edits one of their contacts, as PostgREST sends it: the row trigger bumps the version
-- and audits it, the outbound queue gets (or coalesces) an update for Keap.
-- Variables: :users, :per_user (as seeded by bench_pooling).
\set u random(1, :users)
\set k random(1, :per_user)
BEGIN;
SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', json_build_object('sub', '00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'), 'role', 'authenticated')::text, true);
UPDATE public.sync_contacts SET first_name = 'Edited ' || :client_id, phone = '+1 555 01' || lpad((:k % 100)::text, 2, '0') WHERE email = 'u' || :u || '-' || :k || '@example.test';
COMMIT;
