"""Noise-proof choice between tuned candidates: interleaved, repeated timing; exact kinds kept when they are within
the noise of the fastest approximate one; the winner re-checked against the runner-up before publishing.

A single timing per candidate, taken minutes apart while other work runs, can rank an approximate kind above an
exact one that is faster on a quiet machine (issue 11: ivfpq 5.2k QPS published over an 8.8k QPS exact scan).
Timing every candidate on the same queries in each round, several rounds in alternating order, exposes every
candidate to the same disturbances; the median over rounds ranks them, and the spread over rounds says how far
apart two medians must be before the difference means anything.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

ROUNDS = 5
ROUND_SECONDS = 0.25  # per candidate and round (at least MIN_QUERIES queries)
MIN_QUERIES = 5
MIN_NOISE = 0.05  # medians closer than 5% are treated as equal even when the rounds agree more tightly


@dataclass
class Entrant:
    """One tuned candidate: `search(q)` answers a single (1, d) query as the API would."""

    name: str
    exact: bool
    search: Callable[[F32], Any]
    rounds: list[float] = field(default_factory=list)  # QPS per round

    @property
    def median(self) -> float:
        return statistics.median(self.rounds) if self.rounds else 0.0

    @property
    def spread(self) -> float:
        """Half the interquartile range of the rounds relative to the median: robust to one disturbed round (a
        half-range was not: one round at 2.4x the median on a busy machine made every difference look like noise)."""
        return relative_spread(self.rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "qps_median": round(self.median, 1),
            "qps_spread": round(self.spread, 3),
            "qps_rounds": [round(q, 1) for q in self.rounds],
        }


def time_once(entrant: Entrant, xq: F32, seconds: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """QPS of single-query searches cycling over xq's rows, for about `seconds` (at least MIN_QUERIES queries)."""
    started = clock()
    done = 0
    while True:
        i = done % xq.shape[0]
        entrant.search(xq[i : i + 1])
        done += 1
        if done >= MIN_QUERIES and clock() - started >= seconds:
            break
    return done / max(clock() - started, 1e-9)


def run_rounds(entrants: list[Entrant], xq: F32, rounds: int = ROUNDS, seconds: float = ROUND_SECONDS) -> None:
    """Interleaved rounds: each round times every entrant on the same queries (a different slice each round), in
    alternating order so no entrant always runs first."""
    for entrant in entrants:
        entrant.search(xq[:1])  # warm
    per_round = max(MIN_QUERIES, xq.shape[0] // max(rounds, 1))
    for r in range(rounds):
        start = (r * per_round) % max(1, xq.shape[0] - per_round + 1)
        queries = xq[start : start + per_round]
        for entrant in entrants if r % 2 == 0 else entrants[::-1]:
            entrant.rounds.append(time_once(entrant, queries, seconds))


def noise(*entrants: Entrant) -> float:
    return max([MIN_NOISE, *(e.spread for e in entrants)])


def relative_spread(values: list[float]) -> float:
    """Half the interquartile range relative to the median (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return (high - low) / (2 * middle) if middle > 0 else 0.0


@dataclass
class Decision:
    winner: Entrant
    notes: list[str]
    recheck: dict[str, Any] | None = None


def choose(entrants: list[Entrant], xq: F32, rounds: int = ROUNDS, seconds: float = ROUND_SECONDS) -> Decision:
    """The entrant to publish, from entrants already timed by `run_rounds`; re-checks it against the runner-up."""
    ranked = sorted(entrants, key=lambda e: e.median, reverse=True)
    exact = [e for e in ranked if e.exact]
    approximate = [e for e in ranked if not e.exact]
    notes = []
    winner = ranked[0]
    if exact and approximate and not winner.exact:
        best_exact, best_approx = exact[0], approximate[0]
        margin = noise(best_exact, best_approx)
        if best_exact.median >= best_approx.median * (1 - margin):
            winner = best_exact
            notes.append(
                f"kept exact {best_exact.name} ({best_exact.median:.0f} QPS): within the ±{margin:.0%} noise of "
                f"{best_approx.name} ({best_approx.median:.0f} QPS), and exact results cannot drift"
            )
    others = [e for e in ranked if e is not winner]
    if not others:
        return Decision(winner, notes)
    runner_up = others[0]
    return _recheck(winner, runner_up, xq, rounds, seconds, notes)


def _recheck(winner: Entrant, runner_up: Entrant, xq: F32, rounds: int, seconds: float, notes: list[str]) -> Decision:
    """Paired rounds, winner and runner-up back to back: the ratio of each pair cancels most of what the machine
    was doing in that moment. The runner-up takes over only if it is faster by more than the noise (or, being
    exact, is not clearly slower than an approximate winner)."""
    pair = [
        Entrant(winner.name, winner.exact, winner.search),
        Entrant(runner_up.name, runner_up.exact, runner_up.search),
    ]
    run_rounds(pair, xq[::-1].copy(), rounds, seconds)
    ratios = [w / u for w, u in zip(pair[0].rounds, pair[1].rounds, strict=True) if u > 0]
    ratio = statistics.median(ratios) if ratios else 1.0
    margin = max(MIN_NOISE, relative_spread(ratios))  # pairs cancel what the machine did in that moment
    if runner_up.exact and not winner.exact:
        switch = ratio < 1 + margin  # an approximate winner must clearly beat an exact runner-up
    elif winner.exact and not runner_up.exact:
        switch = ratio < 1 / (1 + margin)  # an exact winner stays unless clearly beaten
    else:
        switch = ratio < 1 / (1 + margin)
    recheck = {
        "winner": winner.name,
        "runner_up": runner_up.name,
        "ratios": [round(r, 3) for r in ratios],
        "median_ratio": round(ratio, 3),
        "noise": round(margin, 3),
        "switched": switch,
    }
    if switch:
        notes.append(
            f"re-check: {runner_up.name} replaces {winner.name} (median ratio {ratio:.2f} over {len(ratios)} paired "
            f"rounds, noise ±{margin:.0%})"
        )
        return Decision(runner_up, notes, recheck)
    notes.append(
        f"re-check: {winner.name} confirmed against {runner_up.name} (median ratio {ratio:.2f}, noise ±{margin:.0%})"
    )
    return Decision(winner, notes, recheck)
