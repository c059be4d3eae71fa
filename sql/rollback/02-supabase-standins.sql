-- Down of 02: drop exactly the stand-ins that 02 created (recorded in keap_pipeline.standins), in
-- reverse order. Roles are never dropped: they are cluster-wide and other databases on the same
-- server (other test databases, other projects) may own objects or grants that depend on them.

do $down$
begin
    if exists (select 1 from keap_pipeline.standins where object_kind = 'function' and object_name = 'auth.jwt()') then
        drop function auth.jwt();
    end if;
    if exists (select 1 from keap_pipeline.standins where object_kind = 'function' and object_name = 'auth.role()') then
        drop function auth.role();
    end if;
    if exists (select 1 from keap_pipeline.standins where object_kind = 'function' and object_name = 'auth.uid()') then
        drop function auth.uid();
    end if;
    if exists (select 1 from keap_pipeline.standins where object_kind = 'table' and object_name = 'auth.users') then
        drop table auth.users;
    end if;
    if exists (select 1 from keap_pipeline.standins where object_kind = 'schema' and object_name = 'auth') then
        -- restrict, not cascade: anything else found in auth is not ours to drop
        drop schema auth restrict;
    end if;
end
$down$;

drop table keap_pipeline.standins;
