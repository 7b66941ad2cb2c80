"""The orchestrator's one-line errors, in a leaf module: the CLI catches them without
importing Ray (which the modules that raise them need), so commands start fast."""

from __future__ import annotations


class CampaignError(Exception):
    """A campaign cannot start (unknown --resume id, ...); the message is one line."""


class ClusterError(Exception):
    """The cluster cannot be reached or used; the message is one line."""


class PlacementError(Exception):
    """Targets that match no node; ``lines`` says which, one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class PreflightError(Exception):
    """What the outside world shows wrong before anything runs (an endpoint nobody answers
    at); ``lines`` holds one line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class StoreOutageError(Exception):
    """The store stayed unavailable past the retry window: the campaign stopped, every
    measured trial kept in its journal. The message is one line."""

    def __init__(self, message: str, campaign_id: str) -> None:
        super().__init__(message)
        self.campaign_id = campaign_id
