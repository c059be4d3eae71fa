-- Helpers the other functions and the policies call: who the Keap ingestion is, time-ordered ids,
-- the timestamp check of the request's batch upsert.
-- requires: 24
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place, and
-- `keap-pipeline migrate` re-applies it. The texts, comments and grants are those last set by the
-- versioned files (is_ingestion and uuid_v7: 24; is_timestamptz: 11, its grant 24).

-- Whether the current transaction is the Keap ingestion: SET ROLE keap_pipeline_ingest (what the
-- pipeline does), or a session logged in as it. The role setting is the one a SECURITY DEFINER
-- function still sees (current_user there is the function's owner), and only members of the role
-- can set it: nobody can claim to be the ingestion by setting a variable.
create or replace function keap_pipeline.is_ingestion()
returns boolean
language sql
stable
set search_path = ''
as $$
    select pg_catalog.current_setting('role') = 'keap_pipeline_ingest'
        or (pg_catalog.current_setting('role') = 'none' and session_user = 'keap_pipeline_ingest')
$$;

comment on function keap_pipeline.is_ingestion() is
    'True when the transaction runs as keap_pipeline_ingest (the Keap ingestion): the allowlist of sql/24.';

revoke execute on function keap_pipeline.is_ingestion() from public;
grant execute on function keap_pipeline.is_ingestion() to keap_pipeline_ingest;

-- A time-ordered uuid (the layout of UUIDv7: 48 bits of Unix milliseconds, version 7, then random
-- bits). Ids of rows written in bulk (ingested contacts, their sync_status and audit rows) land at
-- the right edge of their btree indexes instead of on random pages, which keeps bulk inserts fast
-- as the tables grow. PostgreSQL 18 has uuidv7(); 15-17 do not, hence the choice below. The ids of
-- sync_contacts, sync_status and sync_audit_log DEFAULT to the same expression (set by 24): a function
-- with a SET clause is not inlined, and the bulk paths would pay a call per row.
do $v7$
declare
    v_expr text;
begin
    -- PostgreSQL 18's built-in, or the same bits computed on 15-17 (the layout of 23's uuid_v7()).
    -- Every name is qualified, so the expression means the same under any search_path.
    if pg_catalog.current_setting('server_version_num')::integer >= 180000 then
        v_expr := 'pg_catalog.uuidv7()';
    else
        v_expr := $expr$pg_catalog.encode(
            pg_catalog.set_bit(
                pg_catalog.set_bit(
                    overlay(
                        pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                        placing substring(
                            pg_catalog.int8send(
                                pg_catalog.floor(
                                    pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000
                                )::pg_catalog.int8
                            )
                            from 3
                        )
                        from 1 for 6
                    ),
                    52, 1
                ),
                53, 1
            ),
            'hex'
        )::pg_catalog.uuid$expr$;
    end if;

    execute pg_catalog.format(
        $fn$
            create or replace function keap_pipeline.uuid_v7()
            returns uuid
            language sql
            volatile
            parallel safe
            set search_path = ''
            as %L
        $fn$,
        'select ' || v_expr
    );
end
$v7$;

comment on function keap_pipeline.uuid_v7() is
    'Time-ordered uuid (UUIDv7 layout); the bulk paths use the same expression as the id column defaults.';

revoke execute on function keap_pipeline.uuid_v7() from public;
grant execute on function keap_pipeline.uuid_v7() to keap_pipeline_ingest;

-- True when the text is an ISO-8601 date-time WITH an explicit zone (Z or +hh[:mm]); NULL counts as valid.
-- Without a zone PostgreSQL would read it in the session's time zone: a silent coercion, so refused.
-- PostgreSQL 15 has no pg_input_is_valid, hence the exception block; it runs only for values present.
create or replace function keap_pipeline.is_timestamptz(p_value text)
returns boolean
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
    if p_value is null then
        return true;
    end if;
    if p_value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' then
        return false;
    end if;
    perform p_value::timestamptz;
    return true;
exception
    when others then
        return false;
end
$$;

revoke execute on function keap_pipeline.is_timestamptz(text) from public;
grant execute on function keap_pipeline.is_timestamptz(text) to keap_pipeline_ingest;
