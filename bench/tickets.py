"""Where the load generator gets its join tickets.

A ticket entry is `{"url_path": "/ws/rooms/<slug>/?ticket=...", "pair": i, "side": "a" | "b"}`. Parley's
tickets are single use and expire in 60 s, so sources mint them in small batches right before they are used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class PairTickets:
    pair: int
    a: str  # url_path for peer A (the offerer)
    b: str  # url_path for peer B (the answerer)


class TicketSource(Protocol):
    def prepare(self, count: int) -> None:
        """Get ready to mint tickets for pairs 0..count-1; runs once, before the event loop starts."""

    def mint(self, pairs: Sequence[int]) -> list[PairTickets]:
        """Tickets for `pairs`; may block, so the loader calls it in a thread."""


def _group(entries: Sequence[dict[str, Any]]) -> dict[int, PairTickets]:
    try:
        paths = {(int(entry["pair"]), str(entry["side"])): str(entry["url_path"]) for entry in entries}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError('every ticket entry needs "url_path", "pair" (a number) and "side"') from error
    return {pair: PairTickets(pair, paths[(pair, "a")], paths[(pair, "b")])
            for pair, side in paths if side == "a" and (pair, "b") in paths}


def _plain_path(pair: int, side: str) -> str:
    return f"/ws/rooms/bench-{pair}/?ticket=plain-{pair}-{side}"


def plain_entries(count: int) -> list[dict[str, Any]]:
    """Tickets for the baseline relays, which accept any ticket and take the room from the path."""
    return [{"url_path": _plain_path(pair, side), "pair": pair, "side": side}
            for pair in range(count) for side in "ab"]


class PlainTickets:
    def prepare(self, count: int) -> None:
        pass

    def mint(self, pairs: Sequence[int]) -> list[PairTickets]:
        return [PairTickets(pair, _plain_path(pair, "a"), _plain_path(pair, "b")) for pair in pairs]


class FileTickets:
    """Tickets minted beforehand, read from a JSON file."""

    def __init__(self, path: Path):
        try:
            self._by_pair = _group(json.loads(path.read_text()))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def prepare(self, count: int) -> None:
        missing = [pair for pair in range(count) if pair not in self._by_pair]
        if missing:
            raise ValueError(f"the ticket file has no a+b tickets for {len(missing)} of pairs 0..{count - 1}")

    def mint(self, pairs: Sequence[int]) -> list[PairTickets]:
        return [self._by_pair[pair] for pair in pairs]


class DjangoTickets:
    """Fixtures and tickets made through Parley's models (see fixtures.py); imports Django lazily."""

    def __init__(self, project_dir: Path):
        import fixtures

        self._fixtures = fixtures
        fixtures.setup_django(project_dir)

    def prepare(self, count: int) -> None:
        self._fixtures.ensure_pairs(count)

    def mint(self, pairs: Sequence[int]) -> list[PairTickets]:
        by_pair = _group(self._fixtures.mint_tickets(pairs))
        return [by_pair[pair] for pair in pairs]
