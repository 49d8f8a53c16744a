"""The room settings page, driving the REST API from real Chromium: members, invite links, room fields."""

import re

import pytest
from asgiref.sync import sync_to_async

from calls import services
from calls.models import Room

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


async def test_owner_adds_a_member_by_username(browsers, alice, mallory, password, public_room):
    page = await browsers.logged_in(alice, password, f"/rooms/{public_room.slug}/settings/")
    await page.wait_for_selector("#room-settings[data-ready=true]")
    await page.get_by_label("Username").fill("mallory")
    await page.get_by_role("button", name="Add member").click()
    await page.wait_for_selector('#members li[data-username="mallory"]')
    assert await sync_to_async(public_room.role_of)(mallory) == "member"

    await page.get_by_role("button", name="Make mallory a moderator").click()
    await page.wait_for_selector('#members li[data-username="mallory"]:has-text("moderator")')
    await page.get_by_role("button", name="Remove mallory").click()
    await page.wait_for_selector('#members li[data-username="mallory"]', state="detached")
    assert await sync_to_async(public_room.role_of)(mallory) is None


async def test_an_invite_link_makes_its_opener_a_member(browsers, alice, mallory, password, private_room):
    page = await browsers.logged_in(alice, password, f"/rooms/{private_room.slug}/settings/")
    await page.wait_for_selector("#room-settings[data-ready=true]")
    await page.get_by_role("button", name="Create invite link").click()
    url = (await page.locator("#invites .invite-url").first.text_content(timeout=10_000)).strip()
    path = re.sub(r"^https?://[^/]+", "", url)
    assert re.fullmatch(r"/invite/[^/]+/", path), url

    # Log in through the link's ?next=; the link asks first, and joining lands in the room.
    guest = await browsers.logged_in(mallory, password, path)
    assert await sync_to_async(private_room.role_of)(mallory) is None
    await guest.get_by_role("button", name=f"Join {private_room.name}").click()
    await guest.wait_for_url(f"**{private_room.get_absolute_url()}")
    assert await guest.get_by_role("button", name="Join call").is_visible()
    assert await sync_to_async(private_room.role_of)(mallory) == "member"

    await page.get_by_role("button", name="Revoke invite link").first.click()
    await page.wait_for_selector("#invites .invite-url", state="detached")


async def test_owner_renames_and_locks_the_room(browsers, alice, password, public_room):
    page = await browsers.logged_in(alice, password, f"/rooms/{public_room.slug}/settings/")
    await page.wait_for_selector("#room-settings[data-ready=true]")
    await page.get_by_label("Name", exact=True).fill("Town square")
    await page.get_by_label("Locked: only the owner and moderators may join").check()
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_selector("#settings-status:has-text('Saved.')")
    room = await sync_to_async(Room.objects.get)(pk=public_room.pk)
    assert (room.name, room.locked) == ("Town square", True)


async def test_a_moderator_removes_plain_members_only_and_cannot_delete(
        browsers, alice, bob, carol, django_user_model, password, private_room):
    # More members than one page of the API holds (PARLEY_API_PAGE_SIZE, 20): the page follows `next`.
    for n in range(25):
        extra = await sync_to_async(django_user_model.objects.create_user)(f"guest{n:02}", password=password)
        await sync_to_async(services.add_member)(by=alice, room=private_room, user=extra)
    page = await browsers.logged_in(carol, password, f"/rooms/{private_room.slug}/settings/")
    await page.wait_for_selector("#room-settings[data-ready=true]")
    assert await page.locator("#members li").count() == 28  # alice, bob, carol and 25 guests
    assert await page.get_by_role("button", name="Remove bob").is_visible()
    for name in ("Remove Alice A.", "Remove carol", "Make bob a moderator"):
        assert await page.get_by_role("button", name=name).count() == 0, name
    assert await page.locator("#member-role option[value=moderator]").count() == 0
    assert await page.get_by_role("button", name="Delete room").count() == 0

    await page.get_by_role("button", name="Remove bob").click()
    await page.wait_for_selector('#members li[data-username="bob"]', state="detached")
    assert await sync_to_async(private_room.role_of)(bob) is None


async def test_owner_deletes_the_room_after_typing_its_slug(browsers, alice, password, public_room):
    page = await browsers.logged_in(alice, password, f"/rooms/{public_room.slug}/settings/")
    await page.wait_for_selector("#room-settings[data-ready=true]")
    await page.get_by_role("button", name="Delete room").click()
    await page.wait_for_selector("#settings-status:has-text('to confirm the deletion')")
    assert await sync_to_async(Room.objects.filter(pk=public_room.pk).exists)()

    await page.get_by_label("to confirm").fill(public_room.slug)
    await page.get_by_role("button", name="Delete room").click()
    await page.wait_for_url(re.compile(r"^https?://[^/]+/$"))  # home
    assert not await sync_to_async(Room.objects.filter(pk=public_room.pk).exists)()


async def test_the_settings_page_fits_a_phone(browsers, alice, bob, password, private_room):
    phone = {"width": 375, "height": 740}
    page = await browsers.logged_in(alice, password, f"/rooms/{private_room.slug}/settings/", viewport=phone)
    await page.wait_for_selector("#room-settings[data-ready=true]")
    await page.get_by_role("button", name="Create invite link").click()
    await page.wait_for_selector("#invites .invite-url")
    assert await page.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    # The lock checkbox sits on the first line of its label, not on a line of its own above it.
    label = await page.locator("label.check:has(#room-locked)").bounding_box()
    box = await page.locator("#room-locked").bounding_box()
    assert box["x"] <= label["x"] + 4 and box["y"] < label["y"] + 24
    for name in ("Make bob a moderator", "Remove bob", "Copy invite link", "Revoke invite link", "Delete room"):
        assert await page.get_by_role("button", name=name).is_visible(), name
