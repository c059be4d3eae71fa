-- The request's batch_upsert_contacts pattern written for orders, as the benchmark's reference: row by
-- row, one INSERT ... ON CONFLICT per record inside an exception block, the contact looked up per row.
-- Installed by bench/bench_orders_db_stage.py into its own schema, against the same public.sync_orders
-- (same triggers, indexes and audit) as ours.
create schema if not exists bench_reference;

create or replace function bench_reference.batch_upsert_orders(p_orders jsonb[])
returns table (succeeded integer, failed integer, conflicts integer)
language plpgsql
as $$
declare
    v_succeeded integer := 0;
    v_failed integer := 0;
    v_conflicts integer := 0;
    v_order jsonb;
begin
    foreach v_order in array p_orders
    loop
        begin
            insert into public.sync_orders (
                keap_id, contact_id, keap_contact_id, order_number, order_date, total_amount, currency,
                status, line_items, shipping_address, billing_address, keap_updated_at
            ) values (
                v_order->>'keap_id',
                (select c.id from public.sync_contacts as c where c.keap_id = v_order->>'keap_contact_id'),
                v_order->>'keap_contact_id',
                v_order->>'order_number',
                (v_order->>'order_date')::timestamptz,
                (v_order->>'total_amount')::numeric,
                v_order->>'currency',
                v_order->>'status',
                v_order->'line_items',
                v_order->'shipping_address',
                v_order->'billing_address',
                (v_order->>'keap_updated_at')::timestamptz
            )
            on conflict (keap_id) do update set
                contact_id = excluded.contact_id,
                keap_contact_id = excluded.keap_contact_id,
                order_number = excluded.order_number,
                order_date = excluded.order_date,
                total_amount = excluded.total_amount,
                currency = excluded.currency,
                status = excluded.status,
                line_items = excluded.line_items,
                shipping_address = excluded.shipping_address,
                billing_address = excluded.billing_address,
                keap_updated_at = excluded.keap_updated_at,
                last_synced_at = now(),
                sync_status = 'completed';
            v_succeeded := v_succeeded + 1;
        exception
            when unique_violation then
                v_conflicts := v_conflicts + 1;
            when others then
                v_failed := v_failed + 1;
        end;
    end loop;
    return query select v_succeeded, v_failed, v_conflicts;
end;
$$;
