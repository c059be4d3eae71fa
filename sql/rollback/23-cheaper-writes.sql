-- Down of 23: uuid_v7 as 11 defined it, and the two email indexes of 13.
create or replace function keap_pipeline.uuid_v7()
returns uuid
language sql
volatile
parallel safe
as $$
    select pg_catalog.encode(
        pg_catalog.set_bit(
            pg_catalog.set_bit(
                overlay(
                    pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                    placing substring(
                        pg_catalog.int8send(
                            pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint
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
    )::uuid
$$;

drop index public.idx_sync_contacts_email_status;
create index idx_sync_contacts_email
    on public.sync_contacts (email);
create index idx_sync_contacts_email_status
    on public.sync_contacts (email, sync_status)
    where deleted_at is null;
