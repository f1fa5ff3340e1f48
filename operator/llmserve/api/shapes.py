r"""String formats of the LLMService spec: one regex and one length limit per kind of value.

A `Shape` is checked in three places that must agree: by pydantic when `llmserve render` or the
operator parses a spec, by the API server (the CRD carries it as OpenAPI `pattern` and `maxLength`,
or in a CEL rule for map keys), and by `llmserve fetch-model` before a value becomes a path. So the
regexes use only what Rust's regex crate (pydantic), Go's RE2 (the API server) and Python's `re`
(fetch-model, cel-python) read alike: explicit ASCII classes (`\w` and `\s` are Unicode in Rust,
ASCII in RE2) and no lookaround. Spec values reach argv, file paths and other objects' fields, so
none may start with `-`, and none that becomes a path may climb out with `..`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pydantic import StringConstraints


@dataclass(frozen=True)
class Shape:
    """What a valid string looks like, as a regex, a length limit and words for messages."""

    pattern: str
    max_length: int
    says: str
    """The rule in words, e.g. "a Hugging Face repo id such as Qwen/Qwen2.5-7B-Instruct"."""
    min_length: int = 1
    """1 so that an empty value is refused as empty, before the pattern is tried."""

    @property
    def constraints(self) -> StringConstraints:
        """The pydantic annotation; the CRD generator turns it into minLength/maxLength/pattern."""
        return StringConstraints(
            min_length=self.min_length, max_length=self.max_length, pattern=self.pattern
        )

    def matches(self, value: str) -> bool:
        """Whether `value` has this shape, checked as pydantic and the API server check it."""
        return len(value) <= self.max_length and re.fullmatch(self.pattern, value) is not None


# A segment of letters, digits and '_' (no '-' or '.' first or last, none doubled).
_SEGMENT = r"[A-Za-z0-9_]+([-.][A-Za-z0-9_]+)*"
# A git ref component: no '-' or '.' first, no '..', no '.' last (git check-ref-format's rules,
# narrowed to the characters Hub revisions use).
_REF_PART = r"[A-Za-z0-9_][-A-Za-z0-9_+]*(\.[-A-Za-z0-9_+]+)*"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME_63 = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_CONTROL = r"\x00-\x1f\x7f"
_DECIMAL = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"

REPO_ID: Final = Shape(
    rf"^[A-Za-z0-9][A-Za-z0-9_]*([-.][A-Za-z0-9_]+)*(/{_SEGMENT})?$",
    193,
    "a Hugging Face repo id, ORG/NAME such as Qwen/Qwen2.5-7B-Instruct: letters, digits and '_', "
    "parts joined by single '-' or '.'",
)
REVISION: Final = Shape(
    rf"^{_REF_PART}(/{_REF_PART})*$",
    255,
    "a branch, tag or commit of the repo such as main, v1.0, refs/pr/12 or a 40-hex commit: "
    "letters, digits and '_+-./', no '-' or '.' first, no '..' or '//'",
)
REPO_FILE: Final = Shape(
    rf"^[^-/{_CONTROL}][^{_CONTROL}]*$",
    255,
    "a file (or glob) inside the repo such as '*-Q4_K_M.gguf': no '-' or '/' first, "
    "no control characters",
)
SERVED_NAME: Final = Shape(
    r"^[!-,.-~][!-~]*$",
    128,
    "printable ASCII with no spaces, not starting with '-', e.g. llama-8b",
)
ENV_NAME: Final = Shape(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    128,
    "a C identifier: letters, digits and '_', not starting with a digit, e.g. NCCL_DEBUG",
)
QUANTITY: Final = Shape(
    rf"^\+?{_DECIMAL}(([KMGTPE]i)|[numkMGTPE]|[eE][-+]?{_DECIMAL})?$",
    64,
    "a Kubernetes quantity such as 16Gi, 500m or 2",
)
QUALIFIED_NAME: Final = Shape(
    rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?{_NAME_63}$",
    317,
    "a Kubernetes qualified name such as nvidia.com/gpu: an optional DNS prefix and '/', then "
    "up to 63 letters, digits and '-_.', starting and ending with a letter or digit",
)
LABEL_VALUE: Final = Shape(
    rf"^({_NAME_63})?$",
    63,
    "a Kubernetes label value: up to 63 letters, digits and '-_.', starting and ending with a "
    "letter or digit",
    min_length=0,
)
DNS_SUBDOMAIN: Final = Shape(
    rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$",
    253,
    "a DNS subdomain such as fast-ssd: lowercase letters, digits, '-' and '.'",
)
SECRET_KEY: Final = Shape(
    r"^[-._a-zA-Z0-9]+$",
    253,
    "a key of a Secret: letters, digits and '-._'",
)
IMAGE: Final = Shape(
    r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][-A-Za-z0-9_.]{0,127})?(@[a-z0-9]+([+._-][a-z0-9]+)*:[a-f0-9]{32,128})?$",
    512,
    "an image reference such as registry.example.com/team/vllm-openai:v0.33.0 "
    "(optionally @sha256:DIGEST)",
)

SHAPES: Final = (
    REPO_ID,
    REVISION,
    REPO_FILE,
    SERVED_NAME,
    ENV_NAME,
    QUANTITY,
    QUALIFIED_NAME,
    LABEL_VALUE,
    DNS_SUBDOMAIN,
    SECRET_KEY,
    IMAGE,
)
BY_PATTERN: Final = {shape.pattern: shape for shape in SHAPES}
"""Shapes by their regex, for turning pydantic's `string_pattern_mismatch` into words."""


def climbs(path: str) -> bool:
    """Whether a relative path has a `..` step (the CEL rule on spec.model.file says the same)."""
    return "/../" in f"/{path}/"
