"""Attack 3: forged ownership through created_by / updated_by (hand a row to someone, plant rows, fake an ingested row)."""

from __future__ import annotations

import psycopg
import pytest

from tests.security.conftest import ADMIN, ALICE, BOB, MALLORY, api, rows

FORGERIES = [
    # A hands her row to B and keeps it through updated_by
    pytest.param(ALICE, f"update public.sync_contacts set created_by = '{BOB}', updated_by = '{ALICE}'", id="hand-over"),  # noqa: S608 - fixed test values
    # any owner makes her row look ingested (NULL owner), keeping it through updated_by
    pytest.param(ALICE, f"update public.sync_contacts set created_by = null, updated_by = '{ALICE}'", id="unown"),  # noqa: S608 - fixed test values
    # a row planted among C's (here Bob's) own rows
    pytest.param(MALLORY, f"insert into public.sync_contacts (email, updated_by) values ('plant@evil.example', '{BOB}')", id="plant"),  # noqa: S608 - fixed test values
    # nor through the other tables
    pytest.param(ALICE, f"update public.sync_orders set updated_by = '{BOB}'", id="orders"),  # noqa: S608 - fixed test values
]


@pytest.mark.parametrize(("attacker", "forgery"), FORGERIES)
def test_ownership_cannot_be_forged(world: str, attacker: object, forgery: str) -> None:
    with api(world, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name) values ('alice@app.example', 'Alice')")
        conn.execute("insert into public.sync_orders (order_date, total_amount, status) values (now(), 1, 'PAID')")

    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, attacker) as conn:  # type: ignore[arg-type]
        conn.execute(forgery)

    # Bob received nothing, Alice still owns her row and edits it; updated_by says who edited it
    with api(world, BOB) as conn:
        assert conn.execute("select count(*) from public.sync_contacts").fetchone() == (0,)
    with api(world, ALICE) as conn:
        assert conn.execute("update public.sync_contacts set first_name = 'Alicia'").rowcount == 1
    owned = rows(world, "select created_by, updated_by, first_name from public.sync_contacts where email = 'alice@app.example'")
    assert owned == [{"created_by": ALICE, "updated_by": ALICE, "first_name": "Alicia"}]
    # an admin's edit is the admin's (updated_by) and leaves the row Alice's
    with api(world, ADMIN) as conn:
        assert conn.execute("update public.sync_contacts set company = 'ACME' where email = 'alice@app.example'").rowcount == 1
    owned = rows(world, "select created_by, updated_by from public.sync_contacts where email = 'alice@app.example'")
    assert owned == [{"created_by": ALICE, "updated_by": ADMIN}]
    with api(world, ALICE) as conn:
        assert conn.execute("select company from public.sync_contacts").fetchall() == [("ACME",)]
    with api(world, BOB) as conn:
        assert conn.execute("select count(*) from public.sync_contacts").fetchone() == (0,)
