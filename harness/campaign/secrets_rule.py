"""Which environment variables a campaign may send to an endpoint (an API key as a bearer
token): a shared playbook must not be able to send a user's other secrets (the database
URL, Ray's token) to a server of its author's choosing.

The rule: a variable whose name ends in ``API_KEY`` or ``API_TOKEN`` (``OPENAI_API_KEY``,
``NVIDIA_API_KEY``, ``VLLM_API_TOKEN``) may be sent; another needs ``--allow-env NAME`` on
the command line; the harness's own settings (``HARNESS_*``), Ray's (``RAY_*``), database
URLs and PostgreSQL's (``*DATABASE_URL*``, ``*DB_URL*``, ``PG*``) are never sent.
"""

from __future__ import annotations

import re

from harness.errors import CampaignError
from harness.playbook.expand import expand
from harness.playbook.load import LoadedPlaybook
from workloads import get_workload

KEY_NAME = re.compile(r"^(?:[A-Z][A-Z0-9_]*_)?API_(?:KEY|TOKEN)$")
NEVER = re.compile(r"^(?:HARNESS_|RAY_|PG)|DATABASE_URL|DB_URL")
RULE = "a key's variable must end in API_KEY or API_TOKEN, or be allowed with --allow-env NAME"


def sent_secrets(loaded: LoadedPlaybook) -> list[tuple[str, str]]:
    """(variable, endpoint origin) for each credential the playbook's trials send, once each."""
    pairs: list[tuple[str, str]] = []
    for spec in expand(loaded.model):
        for pair in get_workload(spec.workload).sent_secrets(spec.params):
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def check_sent_secrets(
    loaded: LoadedPlaybook, allow: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """The credentials the playbook sends, each checked against the rule; CampaignError with
    one line per variable refused. Cheap: call it before anything is sent or started."""
    pairs = sent_secrets(loaded)
    problems: list[str] = []
    for name in dict.fromkeys(name for name, _ in pairs):
        where = ", ".join(o for n, o in pairs if n == name)
        if NEVER.search(name):
            problems.append(
                f"{loaded.path}: api_key_env {name} would send a harness, Ray or database "
                f"setting to {where}; refused (never sent, --allow-env or not)"
            )
        elif not KEY_NAME.match(name) and name not in allow:
            problems.append(f"{loaded.path}: api_key_env {name} would be sent to {where}: {RULE}")
    if problems:
        raise CampaignError("\n".join(problems))
    return pairs
