"""The local Hub behaves like the real one where the hub code relies on it: every commit has its own sha
and tree, old commits stay downloadable, and a stale parent commit is refused."""

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from hub_fixtures import hub, hub_server  # noqa: F401


def test_each_commit_has_a_sha_and_old_commits_stay_downloadable(hub):
    api = HfApi()
    api.create_repo("lab/history")
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="notes.txt", repo_id="lab/history")
    second = api.upload_file(path_or_fileobj=b"two", path_in_repo="notes.txt", repo_id="lab/history")
    assert len({first.oid, second.oid}) == 2 and all(len(c.oid) == 40 for c in (first, second))
    assert api.model_info("lab/history").sha == second.oid
    assert [c.commit_id for c in api.list_repo_commits("lab/history")][:2] == [second.oid, first.oid]
    with open(hf_hub_download("lab/history", "notes.txt", revision=first.oid), "rb") as f:
        assert f.read() == b"one"
    with open(hf_hub_download("lab/history", "notes.txt"), "rb") as f:
        assert f.read() == b"two"


def test_large_files_go_through_lfs_and_report_linked_etags(hub):
    api = HfApi()
    api.create_repo("lab/lfs")
    data = bytes(range(256)) * 64
    api.upload_file(path_or_fileobj=data, path_in_repo="weights.safetensors", repo_id="lab/lfs")
    (sibling,) = [s for s in api.model_info("lab/lfs", files_metadata=True).siblings
                  if s.rfilename == "weights.safetensors"]
    assert sibling.lfs is not None and sibling.lfs.size == len(data)
    with open(hf_hub_download("lab/lfs", "weights.safetensors"), "rb") as f:
        assert f.read() == data


def test_a_commit_on_a_stale_parent_is_refused(hub):
    api = HfApi()
    api.create_repo("lab/race")
    base = api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="lab/race")
    api.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="lab/race")
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"c", path_in_repo="c.txt", repo_id="lab/race", parent_commit=base.oid)
    assert err.value.response.status_code == 412
