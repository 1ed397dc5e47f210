"""The runner, not the step, rewrites an instruction row's meta text fields: a step that declares
``rewrites_text`` gets them rewritten with its own transform, one that does not is stopped."""

from __future__ import annotations

import json

import pytest
from chaos_steps import Shout, ShoutSilently
from conftest import query, write_jsonl

from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.tasks import AccountingError

ROWS = [
    {
        "text": "Q: what is a lease?\nA: a contract for the use of land.",
        "url": "inst",
        "meta": {"prompt": "what is a lease?", "response": "a contract for the use of land."},
    },
    {"text": "A plain document without instruction fields, long enough to keep.", "url": "plain"},
]


def _build(tmp_path, step):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    cfg = BuildConfig(root=tmp_path / "data", workers=1, sources=[SourceSpec(src)], steps=[step])
    return run_build(cfg, progress=False)


def test_a_step_that_declares_rewrites_text_gets_the_meta_fields_rewritten_by_the_runner(tmp_path):
    _build(tmp_path, Shout())
    [(text, meta)] = query(tmp_path / "data", "SELECT text, meta FROM documents WHERE url = 'inst'")
    assert text == ROWS[0]["text"].upper()
    assert {k: json.loads(meta)[k] for k in ("prompt", "response")} == {
        "prompt": "WHAT IS A LEASE?",
        "response": "A CONTRACT FOR THE USE OF LAND.",
    }


def test_a_step_that_rewrites_text_without_declaring_it_is_stopped(tmp_path):
    with pytest.raises(AccountingError, match=r"step 'shout_silently' does not declare rewrites_text"):
        _build(tmp_path, ShoutSilently())
