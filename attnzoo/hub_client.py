"""The one place attnzoo talks to the Hub client: downloads, the API handle, and error translation.

huggingface_hub reports problems as a family of HTTP, offline and cache exceptions whose messages span
many lines and name URLs. Every Hub call attnzoo makes runs inside :func:`hub_errors`, which turns them
into one-line :class:`~attnzoo.errors.HubError` messages naming the repo, the revision and the fix.
Settings (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HOME``) are the client's own and are read
from ``huggingface_hub.constants`` at call time, never cached here.

This module sits below ``attnzoo.models`` (it needs nothing but the client and :mod:`attnzoo.errors`), so
the registered models' pretrained loading and the ``attnzoo.hub`` package share one download path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
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
WEIGHTS_NAME = "model.safetensors"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.pth", "model.pth")


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


def _check_reachable(repo_id: str, filename: str, revision: str | None, cache_dir: str | Path | None) -> None:
    """One request, no retries, before downloading a file the cache lacks.

    ``hf_hub_download`` retries a file it has no cached copy of five times with back-off (about 23 s) when
    the Hub cannot be reached, and callers that try a second file wait twice. Asking once first turns an
    unreachable Hub, a missing repo or a missing file into an error at once; the cost is one extra HEAD
    request on a file's first download, and no retry of a transient network failure.
    """
    if constants.HF_HUB_OFFLINE or isinstance(
        try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision), str
    ):
        return  # the download answers from the cache (or says it is not there) without waiting
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=constants.ENDPOINT)
    get_hf_file_metadata(url, library_name="attnzoo")


def download(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    *,
    missing_ok: bool = False,
    cache_dir: str | Path | None = None,
) -> Path | None:
    """Fetch one file into the Hub cache (or find it there when offline) and return its path.

    Fails in seconds, not after the client's retries, when the Hub cannot be reached and the file is not
    cached. With ``missing_ok``, a file the Hub says does not exist gives ``None`` instead of an error.
    """
    with hub_errors(repo_id, revision, filename):
        try:
            _check_reachable(repo_id, filename, revision, cache_dir)
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                        library_name="attnzoo"))
        except RemoteEntryNotFoundError:
            if missing_ok:
                return None
            raise


def weights_file(
    repo_id: str,
    revision: str | None = None,
    *,
    filename: str = WEIGHTS_NAME,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[Path, bool]:
    """``(path, pickled)`` of a repo's weights: ``filename`` (safetensors), else a pickle only if allowed.

    A repo with only a pickle is refused by name, so the user learns why a model that exists does not load.
    """
    path = download(repo_id, filename, revision, missing_ok=True, cache_dir=cache_dir)
    if path is not None:
        return path, False
    where = f"{HUB_PREFIX}{_where(repo_id, revision)}"
    pickles = [name for name in PICKLE_NAMES if name in list_files(repo_id, revision)]
    if not pickles:
        raise HubError(f"{where} has no {filename}; publish the model with attnzoo push first")
    if not allow_pickle:
        raise HubError(
            f"{where} has only pickled weights ({pickles[0]}), no {filename}; attnzoo loads safetensors only: "
            "ask the owner for safetensors, or pass allow_pickle=True to load with torch.load(weights_only=True)"
        )
    return download(repo_id, pickles[0], revision, cache_dir=cache_dir), True


def list_files(repo_id: str, revision: str | None = None) -> list[str]:
    """The repo's file paths at ``revision`` (needs the network)."""
    with hub_errors(repo_id, revision):
        return api().list_repo_files(repo_id, revision=revision)
