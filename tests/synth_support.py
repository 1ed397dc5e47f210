"""Helpers for synthesis tests: a small raw corpus in a real catalog, and a scripted HTTP endpoint.

`FaultServer` is a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions wire
format. Each seed text carries its script: ``FAULTS=429,500,slow,garbage,schema`` applies those
answers to the first calls for that prompt (then answers correctly), ``ALWAYS=garbage`` or
``ALWAYS=500`` applies one forever. Correct answers are derived from the text's ``DOC=<tag>``,
so a test knows exactly which rows must come out.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from corpus.catalog import Catalog
from corpus.store import CorpusLayout
from pipelines.imports import import_file

REPO = Path(__file__).resolve().parents[1]


def make_raw_corpus(root: Path, records: list[dict[str, Any]]) -> CorpusLayout:
    """Import ``records`` into a fresh corpus root and register them as raw shards."""
    layout = CorpusLayout.at(root)
    src = root.parent / f"{root.name}-input.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    shards = import_file(src, layout)
    with Catalog.open(layout) as cat:
        cat.register_shards(None, shards)
        cat.refresh_views()
    return layout


def write_synth_config(path: Path, **sections: Any) -> Path:
    cfg: dict[str, Any] = {"job": "t", "tasks": ["qa"], "templates_dir": str(REPO / "configs" / "prompts")}
    cfg.update(sections)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def expected_answer(tag: str) -> dict[str, str]:
    return {"question": f"What does document {tag} say?", "answer": f"Document {tag} states its facts."}


class FaultServer:
    def __init__(self, api_key: str, slow_s: float = 3.0, delay_s: float = 0.0) -> None:
        self.api_key = api_key
        self.slow_s = slow_s
        self.delay_s = delay_s  # added to every answer: lets a test kill a job mid-way
        self.calls: list[tuple[float, str, str]] = []  # (time, tag, action)
        self.per_prompt: Counter[str] = Counter()
        self.bad_auth = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    server.bad_auth += 1
                    return self._send(401, {"error": {"message": "bad key"}})
                user = body["messages"][-1]["content"]
                tag = re.search(r"DOC=(\w+)", user).group(1)  # type: ignore[union-attr]
                with server.lock:
                    n = server.per_prompt[user]
                    server.per_prompt[user] += 1
                action = server.action(user, n)
                with server.lock:
                    server.calls.append((time.monotonic(), tag, action))
                if action == "429":
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
                if action == "500":
                    return self._send(500, {"error": {"message": "boom"}})
                if action == "slow":
                    time.sleep(server.slow_s)
                time.sleep(server.delay_s)
                content = server.content(body, user, tag, action, n)
                self._send(
                    200,
                    {
                        "id": "chatcmpl-x",
                        "object": "chat.completion",
                        "created": 1_700_000_000,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
                    },
                )

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def content(self, body: dict[str, Any], user: str, tag: str, action: str, n: int) -> str:
        """The text of a 200 answer (``n``: how many times this user message was seen before)."""
        return {
            "garbage": "Sure! Here is a question: what is a contract",
            "schema": json.dumps({"question": "only half"}),
        }.get(action, json.dumps(expected_answer(tag)))

    @staticmethod
    def action(user: str, n: int) -> str:
        if m := re.search(r"ALWAYS=(\w+)", user):
            return m.group(1)
        if m := re.search(r"FAULTS=([\w,]+)", user):
            script = m.group(1).split(",")
            if n < len(script):
                return script[n]
        return "ok"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def candidate_answer(tag: str, temperature: float) -> str:
    """A candidate's answer: it depends on the sampling temperature, and carries an e-mail address
    and full-width letters so a build's pii_redact and normalize have something to rewrite."""
    return f"Document {tag} states its facts (t={temperature:g}); write to clerk-{tag}@example.com. ＦＵＬＬ"


class PreferenceServer(FaultServer):
    """Answers the three stages of task ``preference`` (told apart by the response format): the
    question, free-text candidates (by temperature), and the judge, whose ratings come from the
    seed text's ``JUDGE=9,3`` (``JUDGE=x`` unparsable, ``JUDGE=x:9,3`` unparsable once, then 9 and 3).
    ``SAME`` in the seed makes every candidate answer alike."""

    def __init__(self, api_key: str) -> None:
        super().__init__(api_key)
        self.judge_requests: list[dict[str, Any]] = []

    def content(self, body: dict[str, Any], user: str, tag: str, action: str, n: int) -> str:
        fmt = body.get("response_format") or {}
        name = fmt.get("json_schema", {}).get("name")
        if name == "preference":
            return json.dumps({"question": f"What does document {tag} say?"})
        if name == "judge":
            with self.lock:
                self.judge_requests.append(body)
            script = re.search(r"JUDGE=([\w,:]+)", user).group(1).split(":")  # type: ignore[union-attr]
            step = script[min(n, len(script) - 1)]
            ratings = ["A+", "3"] if step == "x" else step.split(",")
            fields = {f"rating_{i}": r for i, r in enumerate(ratings, 1)}
            return json.dumps({"rationale": f"Answer 1 follows document {tag}.", **fields})
        temperature = 0.0 if "SAME" in user else float(body.get("temperature", 0.0))
        return candidate_answer(tag, temperature)
