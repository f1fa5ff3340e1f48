"""What the operator has seen of its children: the newest wins, news of the deleted is dropped."""

from __future__ import annotations

from typing import Any

from llmserve.reconcile.seen import Seen


def job(uid: str, attempt: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "m-model-download",
            "namespace": "ml",
            "uid": uid,
            "annotations": {"llmserve.io/attempt": attempt},
            "managedFields": [{"manager": "llmserve"}],
        },
    }


def test_a_read_is_a_copy_without_managed_fields() -> None:
    seen = Seen()
    seen.observe(job("a"))
    first = seen.get("Job", "ml", "m-model-download")
    assert first is not None
    assert "managedFields" not in first["metadata"]
    first["metadata"]["annotations"]["llmserve.io/attempt"] = "9"
    again = seen.get("Job", "ml", "m-model-download")
    assert again is not None
    assert again["metadata"]["annotations"]["llmserve.io/attempt"] == "1"


def test_the_deletion_of_an_old_object_leaves_its_successor() -> None:
    seen = Seen()
    seen.observe(job("old"))
    seen.deleting(job("old"))
    seen.wrote(job("new", attempt="2"))
    seen.observe(job("old"))  # a late update of the deleted Job
    seen.vanished(job("old"))  # and then its deletion
    current = seen.get("Job", "ml", "m-model-download")
    assert current is not None
    assert current["metadata"]["uid"] == "new"
    seen.vanished(job("new"))
    assert seen.get("Job", "ml", "m-model-download") is None
    assert len(seen) == 0
