"""Token ids -> text one token at a time, never cutting a character in two.

A byte-level BPE token can hold part of a UTF-8 character (a CJK character or an emoji is often
two or three tokens), and SentencePiece-style decoders drop the leading space of whatever text
they start with. So the decoder re-decodes a short window that starts one emitted step back
(``prefix``) and emits only what the window adds beyond what it had at ``read``; up to three
trailing replacement characters (maybe a character whose last bytes are still to come) wait for
the next token, the text before them does not. The pieces joined are what decoding all
ids at once gives, which is what the non-streamed answer shows.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # window start: the text before it has been emitted
        self.read = 0  # ids up to here are reflected in the emitted text
        self.partial = 0  # characters past ``read``'s text already emitted (before an unfinished tail)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """The text ``token`` completes ('' while a character is still unfinished)."""
        self.ids.append(token)
        seen = self._decode(self.ids[self.prefix : self.read])
        now = self._decode(self.ids[self.prefix :])
        if len(now) <= len(seen):
            return ""
        new = now[len(seen) :]
        if new.endswith(REPLACEMENT):  # maybe an unfinished character: emit only what precedes it
            # at most 3 bytes of a character can be pending, each at most one replacement character
            stable = max(len(new.rstrip(REPLACEMENT)), len(new) - 3)
            out = new[self.partial : stable]
            self.partial = max(self.partial, stable)
            return out
        out, self.partial = new[self.partial :], 0
        self.prefix, self.read = self.read, len(self.ids)
        return out

    def flush(self) -> str:
        """Whatever is left at the end (an unfinished byte sequence decodes as replacement)."""
        seen = self._decode(self.ids[self.prefix : self.read])
        now = self._decode(self.ids[self.prefix :])
        out, self.partial = now[len(seen) + self.partial :], 0
        self.prefix = self.read = len(self.ids)
        return out


def stop_holdback(text: str, stops: list[str]) -> int:
    """How many trailing characters of ``text`` could still become a stop string, so a stream
    must hold them back until the next token says whether they do."""
    longest = max((len(s) for s in stops), default=0)
    for k in range(min(longest - 1, len(text)), 0, -1):
        tail = text[-k:]
        if any(s.startswith(tail) for s in stops):
            return k
    return 0
