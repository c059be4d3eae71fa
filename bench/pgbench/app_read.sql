-- An app user's dashboard read, as PostgREST sends it: role and JWT claims set for the transaction,
-- then the user's own contacts through RLS (one by email, then the 20 most recently updated).
-- Variables: :users (how many users bench_pooling seeded), :per_user (contacts each owns).
\set u random(1, :users)
\set k random(1, :per_user)
BEGIN;
SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', json_build_object('sub', '00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'), 'role', 'authenticated')::text, true);
SELECT id, email, first_name, last_name FROM public.sync_contacts WHERE email = 'u' || :u || '-' || :k || '@example.test';
SELECT id, email, first_name, last_name, updated_at FROM public.sync_contacts WHERE deleted_at IS NULL ORDER BY updated_at DESC LIMIT 20;
COMMIT;
