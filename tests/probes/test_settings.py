"""Shared settings helpers: the secret scrubber and the Encoding type every probe uses."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from probes.settings import Encoding, scrub_secrets


def test_scrub_masks_every_value_and_a_containing_secret_whole() -> None:
    # Shorter first in the list: masking it first would leave the rest of the URL readable.
    text = "GET https://u:tok3n@h/x failed; token tok3n; key k3y"
    out = scrub_secrets(text, ["tok3n", "https://u:tok3n@h/x", "k3y"])
    assert out == "GET *** failed; token ***; key ***"


def test_scrub_skips_empty_none_and_values_below_min_length() -> None:
    assert scrub_secrets("会话 12 阻塞", ["", None, "12"], min_length=3) == "会话 12 阻塞"
    assert scrub_secrets("会话 12 阻塞", ["12"]) == "会话 *** 阻塞"


class _Model(BaseModel):
    encoding: Encoding = "utf-8"


def test_encoding_keeps_the_name_as_written_and_refuses_unknown() -> None:
    assert _Model(encoding="GBK").encoding == "GBK"
    with pytest.raises(ValidationError, match="unknown encoding 'klingon'"):
        _Model(encoding="klingon")
