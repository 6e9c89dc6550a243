"""The one place attnzoo talks to the Hub client: downloads, the API handle, and error translation.

huggingface_hub reports problems as a family of HTTP, offline and cache exceptions whose messages span
many lines and name URLs. Everything the hub package does runs inside :func:`hub_errors`, which turns them
into one-line :class:`~attnzoo.errors.HubError` messages naming the repo, the revision and the fix.
Settings (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HOME``) are the client's own and are read
from ``huggingface_hub.constants`` at call time, never cached here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from attnzoo.errors import HubError

HUB_PREFIX = "hf-hub:"


# The Hub's own rules: org and name of letters, digits, '-', '_', '.', no '--' or '..', at most 96 characters.
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


def split_hub_name(name: str) -> tuple[str, str | None]:
    """``"hf-hub:org/repo@rev"`` (prefix optional) -> ``("org/repo", "rev")``; revision ``None`` if absent."""
    if not isinstance(name, str):
        raise HubError(f"{name!r} is not a Hub model id; write it as hf-hub:org/name or hf-hub:org/name@revision")
    repo = name[len(HUB_PREFIX):] if name.startswith(HUB_PREFIX) else name
    repo_id, _, revision = repo.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or "@" in revision or not all(_REPO_PART.fullmatch(p) and "--" not in p and ".." not in p
                                                     for p in parts):
        raise HubError(f"{name!r} is not a Hub model id; write it as hf-hub:org/name or hf-hub:org/name@revision "
                       "(letters, digits, '-', '_', '.')")
    check_revision(revision or None)
    return repo_id, revision or None


def check_revision(revision: str | None) -> None:
    """Refuse a branch/tag/commit name the Hub cannot have (spaces, '..', a leading '/' or '-')."""
    if revision is not None and (not isinstance(revision, str) or not _REVISION.fullmatch(revision)
                                 or ".." in revision or "//" in revision or revision.endswith(("/", ".lock"))):
        raise HubError(f"revision {revision!r} is not a branch, tag or commit name; use letters, digits and "
                       "'-', '_', '.', '/' (e.g. main, v1.0, exp/lr-0.05)")


def _where(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


@contextmanager
def hub_errors(repo_id: str, revision: str | None = None, filename: str | None = None) -> Iterator[None]:
    """Re-raise Hub client errors from the block as one-line :class:`HubError` messages with the fix."""
    where = _where(repo_id, revision)
    what = f"{filename} of {where}" if filename else where
    try:
        yield
    except RevisionNotFoundError:
        raise HubError(
            f"revision {revision or 'main'!r} not found in Hub repo {repo_id!r}; check the branch name or push "
            f"to it first (attnzoo push ... --revision {revision or 'main'})"
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"Hub repo {repo_id!r} not found at {constants.ENDPOINT} (or it is private); check the name, or set "
            "HF_TOKEN to a token that can read it"
        ) from None
    except OfflineModeIsEnabled:
        raise HubError(
            f"HF_HUB_OFFLINE=1 blocks Hub access for {what}; unset HF_HUB_OFFLINE to reach {constants.ENDPOINT}"
        ) from None
    except LocalEntryNotFoundError as err:
        if constants.HF_HUB_OFFLINE or isinstance(err.__cause__, OfflineModeIsEnabled):
            raise HubError(
                f"HF_HUB_OFFLINE=1 and {what} is not in the cache {constants.HF_HUB_CACHE}; unset HF_HUB_OFFLINE "
                "to download it once, or point HF_HOME at the cache that has it"
            ) from None
        raise HubError(
            f"cannot reach the Hub at {constants.ENDPOINT} and {what} is not cached; check the network and "
            "HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache only"
        ) from None
    except EntryNotFoundError:
        raise HubError(f"Hub repo {where} has no file {filename}; push the model with attnzoo push") from None
    except httpx2.TransportError:
        raise HubError(
            f"cannot reach the Hub at {constants.ENDPOINT} for {what}; check the network and HF_ENDPOINT"
        ) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        if status in (401, 403):
            raise HubError(
                f"the Hub refused access to {where} (HTTP {status}); set HF_TOKEN to a token with write access "
                "to that namespace"
            ) from None
        server_message = (err.server_message or "").strip().splitlines()
        detail = f": {server_message[0]}" if server_message else ""
        raise HubError(f"the Hub answered HTTP {status} for {what}{detail}") from None


def api(token: str | None = None) -> HfApi:
    """An :class:`HfApi` for the configured endpoint; ``token`` ``None`` uses ``HF_TOKEN`` / the saved login."""
    return HfApi(endpoint=constants.ENDPOINT, token=token, library_name="attnzoo")


def download(
    repo_id: str, filename: str, revision: str | None = None, *, missing_ok: bool = False
) -> Path | None:
    """Fetch one file into the shared Hub cache (or find it there when offline) and return its path.

    With ``missing_ok``, a file the Hub says does not exist gives ``None`` instead of an error.
    """
    with hub_errors(repo_id, revision, filename):
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, library_name="attnzoo"))
        except RemoteEntryNotFoundError:
            if missing_ok:
                return None
            raise


def list_files(repo_id: str, revision: str | None = None) -> list[str]:
    """The repo's file paths at ``revision`` (needs the network)."""
    with hub_errors(repo_id, revision):
        return api().list_repo_files(repo_id, revision=revision)
