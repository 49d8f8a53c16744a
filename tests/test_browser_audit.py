"""The audit trail in the admin, in Chromium against a real daphne process: what a browser's own log-ins leave
there (with the address the server saw), read-only, filtered by action. With PARLEY_DOCS_SCREENSHOTS=<folder> it
saves the list as <folder>/audit-admin.png (docs/operations.md, "Audit trail")."""

import os

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.models import AuditEvent
from calls import services, tickets

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


async def test_an_operator_reads_the_audit_trail_read_only_and_filters_it(browsers, live_server_process, alice,
                                                                          mallory, password, room):
    await sync_to_async(type(alice).objects.filter(pk=alice.pk).update)(is_staff=True, is_superuser=True)
    await sync_to_async(services.update_room)(by=alice, room=room, locked=True, address="203.0.113.40")
    ticket = await sync_to_async(tickets.issue_ticket)(user=mallory, room=room, address="198.51.100.7")
    async with websockets.connect(f"{live_server_process.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4404

    page = await browsers.new_page("alice", viewport={"width": 1600, "height": 900})
    await page.goto("/accounts/login/")
    await page.fill("#id_username", "alice")
    await page.fill("#id_password", "not-her-password")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector(".errorlist, .alert, [role=alert]")
    await page.fill("#id_username", "alice")
    await page.fill("#id_password", password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/")
    await page.goto("/admin/accounts/auditevent/")

    rows = page.locator("#result_list tbody tr")
    shown = await rows.all_inner_texts()
    actions = await page.locator("#result_list tbody td.field-action").all_inner_texts()
    assert actions[:2] == ["login.succeeded", "login.failed"], shown  # the browser's own, newest first
    assert {"join.refused", "ticket.issued", "room.locked", "room.created", "member.added"} <= set(actions)
    assert "127.0.0.1" in shown[0] and "127.0.0.1" in shown[1]  # the address the server saw
    assert await page.locator("#content .object-tools a.addlink").count() == 0  # nobody adds audit events
    assert await page.locator("select[name=action] option[value=export_csv]").count() == 1

    if os.environ.get("PARLEY_DOCS_SCREENSHOTS"):  # regenerates docs/audit-admin.png (docs/operations.md)
        await page.screenshot(path=f"{os.environ['PARLEY_DOCS_SCREENSHOTS']}/audit-admin.png")

    await page.get_by_role("link", name="login.failed (Log-in failed)").click()
    await page.wait_for_url("**/?action=login.failed")
    assert await rows.count() == 1 == await AuditEvent.objects.filter(action="login.failed").acount()
    await rows.first.locator("th a").click()  # the event's own page: read-only, without a save button
    await page.wait_for_selector("#content")
    assert await page.locator("input[name=_save]").count() == 0
    assert "not-her-password" not in await page.content()
