"""Every kind the renderer makes is one the operator can write and watches, so a deleted or edited
child of any kind comes back."""

from __future__ import annotations

import kopf
import pytest
from tests.support import service

from llmserve import render
from llmserve.api.config import OperatorConfig
from llmserve.handlers import children as child_handlers
from llmserve.kube import objects

KINDS = [
    (child["apiVersion"], child["kind"])
    for child in render.render(service({"gpuMemoryGiB": 80}), OperatorConfig())
]


def watched() -> set[tuple[str, str, str]]:
    """(group, version, plural) of every child watch filtered by the managed-by label."""
    # kopf has no public listing of its registry; the attribute is stable across kopf 1.x.
    handlers = kopf.get_default_registry()._watching.get_all_handlers()
    return {
        (h.selector.group, h.selector.version, h.selector.any_name)
        for h in handlers
        if h.labels == child_handlers.MANAGED
    }


def test_the_renderer_makes_the_five_kinds() -> None:
    assert [kind for _, kind in KINDS] == [
        "PersistentVolumeClaim", "Job", "Deployment", "Service", "NetworkPolicy"
    ]  # fmt: skip


@pytest.mark.parametrize(("api_version", "kind"), KINDS, ids=[k for _, k in KINDS])
def test_every_rendered_kind_has_an_api_path_and_a_labelled_watch(
    api_version: str, kind: str
) -> None:
    path = objects._path(api_version, kind, "ml")
    group, _, version = api_version.rpartition("/")
    prefix = f"/apis/{api_version}" if group else f"/api/{version}"
    assert path.startswith(f"{prefix}/namespaces/ml/")
    plural = path.rsplit("/", 1)[1]
    assert (group, version, plural) in watched()
