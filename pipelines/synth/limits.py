"""Requests- and tokens-per-minute limits over a sliding 60-second window (asyncio).

Hosted APIs meter both; hitting either yields 429s that cost a retry each, so the client waits
before sending instead. A request books an *estimate* of its tokens (prompt characters / 3 plus
``max_tokens``: an over-estimate for English, about right for Chinese) and, when its response
arrives, the booking is corrected to the reported usage.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

WINDOW_S = 60.0


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    return math.ceil(prompt_chars / 3) + max_tokens


@dataclass(eq=False)  # identity: two bookings of equal size are different requests
class Booking:
    at: float
    tokens: int


class RateLimiter:
    """``acquire(tokens)`` returns once sending fits both limits; 0 disables a limit."""

    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.clock = clock
        self.sleep = sleep
        self.window: deque[Booking] = deque()
        self.tokens_in_window = 0
        self.waited_s = 0.0
        self._lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        while self.window and now - self.window[0].at >= WINDOW_S:
            self.tokens_in_window -= self.window.popleft().tokens

    def _wait_needed(self, tokens: int, now: float) -> float:
        waits = [0.0]
        if self.rpm and len(self.window) >= self.rpm:
            waits.append(self.window[len(self.window) - self.rpm].at + WINDOW_S - now)
        if self.tpm and self.window and self.tokens_in_window + tokens > self.tpm:
            # wait until enough of the oldest bookings expire (a request larger than the whole
            # budget goes out alone on an empty window rather than never)
            freed, need = 0, self.tokens_in_window + tokens - self.tpm
            for b in self.window:
                freed += b.tokens
                if freed >= need:
                    waits.append(b.at + WINDOW_S - now)
                    break
        return max(waits)

    async def acquire(self, tokens: int) -> Booking:
        if not self.rpm and not self.tpm:
            return Booking(self.clock(), 0)
        async with self._lock:  # one waiter at a time keeps the order fair (FIFO)
            while True:
                now = self.clock()
                self._expire(now)
                wait = self._wait_needed(tokens, now)
                if wait <= 0:
                    booking = Booking(now, tokens)
                    self.window.append(booking)
                    self.tokens_in_window += tokens
                    return booking
                self.waited_s += wait
                await self.sleep(wait)

    def settle(self, booking: Booking, actual_tokens: int) -> None:
        """Replace a booking's estimate by the usage the server reported."""
        if booking in self.window:
            self.tokens_in_window += actual_tokens - booking.tokens
        booking.tokens = actual_tokens
