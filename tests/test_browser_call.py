"""Calls between real Chromium pages through a real daphne process: media, chat, mute, leave, mesh, glare."""

import pytest
from asgiref.sync import sync_to_async

from calls.models import Call

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


async def join_call(page, *, audio: bool = True, video: bool = True):
    await page.wait_for_selector("#call[data-ready=true]")
    if not audio:
        await page.get_by_role("checkbox", name="Microphone").uncheck()
    if not video:
        await page.get_by_role("checkbox", name="Camera").uncheck()
    await page.get_by_role("button", name="Join call").click()
    await page.wait_for_selector("#call[data-state=joined]")
    return await page.get_attribute("#call", "data-peer-id")


def tile(peer_id: str) -> str:
    return f'.tile[data-peer-id="{peer_id}"]'


async def wait_connected(page, peer_id: str):
    await page.wait_for_selector(f'{tile(peer_id)}[data-connection-state="connected"]')


async def wait_video_playing(page, peer_id: str):
    await page.wait_for_function(
        """(selector) => { const v = document.querySelector(selector + " video");
                           return v && v.videoWidth > 0 && v.readyState >= 2 && !v.paused; }""",
        arg=tile(peer_id),
    )


async def two_in_a_call(browsers, room, first, second, password):
    page_one = await browsers.logged_in(first, password, room.get_absolute_url())
    page_two = await browsers.logged_in(second, password, room.get_absolute_url())
    one = await join_call(page_one)
    two = await join_call(page_two)
    await wait_connected(page_one, two)
    await wait_connected(page_two, one)
    return page_one, one, page_two, two


async def test_two_people_see_each_other_chat_mute_and_leave(browsers, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password)

    await wait_video_playing(alice_page, bob_peer)
    await wait_video_playing(bob_page, alice_peer)
    assert await alice_page.text_content(f"{tile(bob_peer)} .tile-name") == "bob"
    assert await bob_page.text_content(f"{tile(alice_peer)} .tile-name") == "Alice A."

    await alice_page.get_by_role("textbox", name="Message").fill("Hello Bob")
    await alice_page.get_by_role("button", name="Send").click()
    await bob_page.wait_for_selector(f'#chat-log li[data-from="{alice_peer}"]:has-text("Hello Bob")')

    await bob_page.get_by_role("button", name="Mute microphone").click()
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-audio="false"] .tile-muted:visible')
    await bob_page.get_by_role("button", name="Unmute microphone").click()
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-audio="true"]')

    await bob_page.get_by_role("button", name="Leave").click()
    await bob_page.wait_for_selector("#call[data-state=ended]")
    await alice_page.wait_for_selector('#call-events li[data-type="peer-left"]', state="attached")
    assert await alice_page.locator(tile(bob_peer)).count() == 0

    await alice_page.get_by_role("button", name="Leave").click()
    await alice_page.wait_for_selector("#call[data-state=ended]")

    call = await sync_to_async(Call.objects.get)(pk=int(await alice_page.get_attribute("#call", "data-call-id")))
    for _ in range(50):  # the server records the last leave just after the socket closes
        if call.ended_at is not None:
            break
        await alice_page.wait_for_timeout(100)
        await sync_to_async(call.refresh_from_db)()
    assert call.ended_at is not None
    participants = await sync_to_async(lambda: sorted(
        (p.user.username, p.leave_reason) for p in call.participants.select_related("user")))()
    assert participants == [("alice", "left"), ("bob", "left")]
