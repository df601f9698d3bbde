"""Tell a mute connection from a quiet one by each stream's learned cadence (pure, no clock).

Every data frame names its stream (``{"stream":"btcusdt@trade",...}``; :func:`stream_of` reads
the venue's exact form without decoding and decodes anything else, so a proxy that adds spaces,
pretty-prints or reorders keys changes nothing). :class:`Cadence` keeps, per
stream, the time of its last frame and an exponentially weighted moving average of the gaps
between frames. A connection is stale when either

* no frame at all arrived for ``max_silence_ns`` (the hard limit), or
* every stream that has a learned cadence is far past its expected gap: ``now - last >
  max(factor * ewma, floor_ns)``.

One quiet symbol on a busy connection is therefore never a failure of the *connection*: the busy
streams keep it alive. Streams still learning (fewer than ``warmup`` gaps seen) only count through
the hard limit. Times are integer nanoseconds from a monotonic clock, passed in by the caller.

One *subscription* can still be lost while its connection flows (the venue stops one stream's
fan-out). :meth:`Cadence.silent_streams` names it, by this rule:

* the stream has a learned cadence (``warmup`` gaps seen: a symbol that never traded on this
  connection is never judged);
* it is silent past ``max(factor * ewma, 2 * its longest gap so far, floor_ns)``: a symbol that
  trades in bursts with long pauses has shown those pauses, and gets twice the longest as room,
  so quiet-by-nature streams raise no alarm;
* another stream delivered a frame after that bound ran out: one of the same symbol when the
  symbol has other learned streams (its depth and book-ticker cadence prove the symbol still
  moves on this connection, so a halt, whose streams stop together but run past their bounds
  one by one, singles out none), else any stream of the connection. A whole connection that
  stalls stops every stream at once, so no stream is singled out: the connection goes stale
  instead (:meth:`Cadence.stale`);
* its bound counts from its own last frame, or from the moment its symbol resumed if later: when
  a halt ends the symbol's streams come back one by one (trades before the next depth diff), and
  each gets its whole bound again before the first back can single it out;
* not every learned stream of its symbol (the name before ``@``) is overdue. A symbol whose
  trades, depth and book ticker all stopped while other symbols flow is *quiet* (a halt, a
  market with nothing happening), not lost: :meth:`Cadence.quiet_symbols` names it. A lost
  subscription leaves the symbol's other streams flowing. With a single stream per symbol the
  two cannot be told apart, and the stream counts as silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickpipe.common.links import decoded_object

__all__ = ["Cadence", "StreamCadence", "decoded_object", "stream_of"]

_PREFIX = '{"stream":"'
_PREFIX_B = _PREFIX.encode()
#: The venue's exact form of a user-data event: never a combined-stream frame.
_USER_DATA = '{"subscriptionId":'
_USER_DATA_B = _USER_DATA.encode()


def stream_of(frame: str | bytes) -> str | None:
    """Return the stream name of a combined-stream frame, else ``None``.

    The venue's exact form (``{"stream":"`` first, a name without escapes) is read without
    decoding; any other frame that may be JSON is decoded, so whitespace and key order do not
    matter.
    """
    if isinstance(frame, bytes):
        if frame.startswith(_PREFIX_B):
            end = frame.find(b'"', len(_PREFIX_B))
            if end > 0 and frame.find(b"\\", len(_PREFIX_B), end) < 0:
                return frame[len(_PREFIX_B) : end].decode(errors="replace")
        elif frame.startswith(_USER_DATA_B):
            return None
    elif frame.startswith(_PREFIX):
        end = frame.find('"', len(_PREFIX))
        if end > 0 and frame.find("\\", len(_PREFIX), end) < 0:
            return frame[len(_PREFIX) : end]
    elif frame.startswith(_USER_DATA):
        return None
    obj = decoded_object(frame)
    if obj is None or "data" not in obj:
        return None
    stream = obj.get("stream")
    return stream if isinstance(stream, str) else None


@dataclass(slots=True)
class StreamCadence:
    """The last arrival and the smoothed gap of one stream."""

    last_ns: int
    ewma_ns: float = 0.0
    gaps: int = 0
    longest_ns: int = 0


@dataclass(slots=True)
class Cadence:
    """Learn each stream's inter-arrival time and judge the connection's liveness."""

    started_ns: int
    max_silence_ns: int
    factor: float = 10.0
    floor_ns: int = 2_000_000_000
    alpha: float = 0.2
    warmup: int = 3
    last_any_ns: int = 0
    streams: dict[str, StreamCadence] = field(default_factory=dict)
    #: per symbol, when one of its streams last delivered again after running past its bound
    #: (a halt's end): from then on each of its streams gets its bound anew
    resumed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.last_any_ns = self.started_ns

    def seen(self, stream: str | None, now_ns: int) -> None:
        """Record one frame (``stream`` ``None`` for replies and other non-data frames)."""
        self.last_any_ns = now_ns
        if stream is None:
            return
        state = self.streams.get(stream)
        if state is None:
            self.streams[stream] = StreamCadence(now_ns)
            return
        gap = now_ns - state.last_ns
        if gap > self.floor_ns:  # rare on a busy stream: was it past its bound (resuming)?
            bound = self.silent_bound_ns(stream)
            if bound is not None and gap > bound:
                self.resumed[stream.partition("@")[0]] = now_ns
        state.ewma_ns = (
            gap if state.gaps == 0 else state.ewma_ns + self.alpha * (gap - state.ewma_ns)
        )
        state.gaps += 1
        state.longest_ns = max(state.longest_ns, gap)
        state.last_ns = now_ns

    def expected_gap_ns(self, stream: str) -> float | None:
        """Return how long ``stream`` may stay silent before it counts as overdue, if learned."""
        state = self.streams.get(stream)
        if state is None or state.gaps < self.warmup:
            return None
        return max(self.factor * state.ewma_ns, float(self.floor_ns))

    def silent_bound_ns(self, stream: str) -> float | None:
        """Return how long ``stream`` may stay silent while its siblings flow, if learned."""
        state = self.streams.get(stream)
        allowed = self.expected_gap_ns(stream)
        if state is None or allowed is None:
            return None
        return max(allowed, 2.0 * state.longest_ns)

    def _overdue(self, now_ns: int) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Return each learned stream past its bound (as the time its bound ran out) and the
        learned streams of each symbol."""
        overdue: dict[str, int] = {}
        by_symbol: dict[str, list[str]] = {}
        for name, state in self.streams.items():
            bound = self.silent_bound_ns(name)
            if bound is None:
                continue
            symbol = name.partition("@")[0]
            by_symbol.setdefault(symbol, []).append(name)
            deadline = max(state.last_ns, self.resumed.get(symbol, 0)) + int(bound)
            if now_ns > deadline:
                overdue[name] = deadline
        return overdue, by_symbol

    def _flowed_after(self, deadline_ns: int, besides: set[str]) -> bool:
        """Tell whether a stream not in ``besides`` delivered after ``deadline_ns``.

        That proves the connection still delivered once the silent streams were overdue; a
        whole connection that stalls has every stream stop at once, so none qualifies.
        """
        return any(
            state.last_ns > deadline_ns
            for name, state in self.streams.items()
            if name not in besides
        )

    def quiet_symbols(self, now_ns: int) -> list[str]:
        """Return the symbols (as named in streams) whose every learned stream is overdue while
        other streams of the connection still deliver."""
        overdue, by_symbol = self._overdue(now_ns)
        quiet = []
        for symbol, names in by_symbol.items():
            if len(names) > 1 and all(name in overdue for name in names):
                if self._flowed_after(max(overdue[n] for n in names), set(names)):
                    quiet.append(symbol)
        return quiet

    def silent_streams(self, now_ns: int) -> list[tuple[str, int]]:
        """Return ``(stream, silent ns)`` of each learned stream silent past its bound while
        another stream of the connection delivered after that bound ran out.

        When the whole connection stops no stream is singled out (see :meth:`stale`); the
        streams of a quiet symbol (:meth:`quiet_symbols`) are left out.
        """
        overdue, by_symbol = self._overdue(now_ns)
        quiet = set(self.quiet_symbols(now_ns))
        out = []
        for name, deadline in overdue.items():
            symbol = name.partition("@")[0]
            if symbol in quiet:
                continue
            siblings = set(by_symbol[symbol]) - {name}
            if siblings:  # the symbol's own book streams tell whether the symbol still moves
                alive = any(self.streams[s].last_ns > deadline for s in siblings)
            else:
                alive = self._flowed_after(deadline, {name})
            if alive:
                out.append((name, now_ns - self.streams[name].last_ns))
        return out

    def stale(self, now_ns: int) -> str | None:
        """Return why the connection is stale, or ``None`` while it is alive."""
        silent_ns = now_ns - self.last_any_ns
        if silent_ns > self.max_silence_ns:
            return f"no frame for {silent_ns / 1e9:.1f} s"
        if silent_ns <= self.floor_ns:
            return None
        learned = 0
        for name, state in self.streams.items():
            allowed = self.expected_gap_ns(name)
            if allowed is None:
                continue
            learned += 1
            if now_ns - state.last_ns <= allowed:
                return None
        if learned == 0:
            return None
        return f"all {learned} streams past their expected gap (silent {silent_ns / 1e9:.1f} s)"
