"""The control law that sets each worker's send interval and message size.

Pure Python: it maps measured signals to settings and knows nothing about
Dask, so it is tested on its own. The scheduler plugin feeds it.

The law budgets communication by *time*, following the network's load
(Keuper & Pfreundt's idea: fewer or smaller messages when they queue or get
lost) and the training's progress (AdaComm, Wang & Joshi 2019: communicate
rarely while the loss falls fast, more often as it flattens).

For one worker, over the last report period:

* ``cost``: what one exchange costs the worker: wall time in the training
  thread (merge and publish) plus the CPU time the worker's event loop spent
  over the period (serialising what was sent and received; left out where
  the loop also runs the scheduler), per exchange;
  and ``latency``: time from publish to the peer's answer;
* ``send_time = max(cost / cpu_budget, latency / link_share)``: the shortest
  time between two sends that keeps exchanges under ``cpu_budget`` of the
  worker's time and keeps a message's transfer under ``link_share`` of the
  interval (so messages do not queue);
* if messages were dropped at the in-flight bound or lost in the peer's
  mailbox, the link is behind: ``send_time`` is stretched by the share of
  messages that did not arrive;
* ``progress``: the relative fall of the loss per second; while it is large,
  ``send_time`` is stretched up to ``max_progress_stretch`` times (AdaComm);
* the interval in samples is ``send_time x samples per second``;
* when the interval would exceed ``max_send_time`` seconds (states would go
  stale), the message size shrinks instead, so each message moves faster; it
  grows back when the link has room. Messages under ``min_bytes_to_split`` are
  never split: their transfer time is latency, which splitting does not cut.

What exchange *buys* is weighed against that cost. Over the period the
worker sums how far each merge moved the columns it merged (``merge_shift``)
and how far its own training had moved the same columns since its previous
exchange (``local_move``). Their ratio is the *benefit*. With rows drawn
from one distribution, the peers' states differ from the worker's only by
their own noise since the last merge, so a merge moves the state by about
``1/sqrt(2)`` of the worker's own movement or less, and exchanging buys
little over averaging at the end. A merge that moves the state further than
the worker's own training did brings what the worker's rows do not hold
(rows of other classes, clusters found elsewhere): exchange pays. So:

* benefit below ``useless_benefit``: the interval grows ``growth`` times per
  report (after smoothing, about ``sqrt(growth)``) and messages halve, toward
  no exchange; the rare exchanges that remain are the probes that see when
  merges start to pay;
* benefit above ``useful_benefit``: the interval falls to the cost bound at
  once, and messages grow back to whole states. The bound is then the CPU
  budget and the link with sends overlapping on it (``paying_link_share``,
  as many as the exchange keeps in flight), stretched only for failed sends:
  no progress stretch, and publishes dropped at the in-flight bound or
  messages overwritten in a mailbox, which cost little, do not count against
  merging often;
* in between (merges move the state about as far as training does), or with
  only states that a whole-state test (K-Means) rejected (their centers lie
  in another arrangement: neither benefit nor cost): exchange is not shown
  useless, so the interval holds where the last judged period put it; only
  the paying bound (failed sends, CPU) may lengthen it. A noisy benefit
  crossing ``useful_benefit`` then does not throw the interval from the
  paying bound to the stretched cost bound;
* with no merge in the period (benefit unknown): the cost law alone, never
  shortening the interval.

The law acts only on reports, so a worker starts at the user's interval but
no longer than lets a report's exchanges happen in the first quarter of its
first epoch (:meth:`BalancingPolicy.first_send_interval`).

Changes smaller than ``deadband`` are ignored and changes up to
``jump_ratio`` are smoothed, so the law holds still on a steady link and
settles in a few reports when the link changes. A target more than
``jump_ratio`` times the current interval (the user's starting value on a link
or state it does not suit, or a link that just slowed by orders of magnitude)
is taken at once: smoothing it would spend several report periods sending far
more than the worker or the link can afford. Only moves to *longer* intervals
jump: one that overshot comes back down smoothly, so the law cannot swing
between a congested and an idle setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PolicyLimits:
    """Bounds and constants of the control law.

    The bounds users may set come first and have no default here: they are
    the ``asgd.balancing.*`` settings, whose defaults live in ``asgd.yaml``.
    The rest are the law's own constants.
    """

    #: Smallest and largest send interval, in samples.
    min_send_interval: int
    max_send_interval: int
    #: Smallest fraction of the state per message.
    min_message_size: float
    #: Share of a worker's wall time exchanges may take.
    cpu_budget: float
    #: Longest wanted time between two sends, in seconds.
    max_send_time: float
    #: Largest fraction of the state per message.
    max_message_size: float = 1.0
    #: A message's transfer may take this share of the send interval.
    link_share: float = 0.5
    #: The same share when exchange pays: over 1, sends overlap on the wire,
    #: as many as the exchange keeps in flight (``max-in-flight``, 2).
    paying_link_share: float = 2.0
    #: How much fast loss progress may stretch the send interval.
    max_progress_stretch: float = 4.0
    #: Relative loss fall per second above which progress counts as fast.
    fast_progress: float = 0.5
    #: Messages smaller than this are never split: their transfer time is
    #: latency, not bandwidth, so a smaller message would not move faster.
    min_bytes_to_split: int = 64 * 1024
    #: Relative changes smaller than this are not applied.
    deadband: float = 0.2
    #: Weight of a new target against the current setting (0..1].
    smoothing: float = 0.5
    #: A target more than this factor above the current interval is applied
    #: without smoothing.
    jump_ratio: float = 4.0
    #: Benefit (merge shift / own movement) below which exchange buys nothing.
    useless_benefit: float = 0.5
    #: Benefit above which exchange pays.
    useful_benefit: float = 1.0
    #: Factor per report by which the target interval moves away from a useless
    #: exchange, or toward the cost bound when exchange pays.
    growth: float = 4.0


@dataclass(frozen=True)
class WorkerSignals:
    """What one worker measured over one report period."""

    #: Samples trained per second of wall time.
    samples_per_second: float
    #: Mean seconds one exchange costs the worker: merge and publish in the
    #: training thread plus the event loop's CPU for sending and receiving.
    exchange_seconds: float
    #: Mean seconds from publish to the peer's answer (0 if unknown).
    send_latency: float
    #: Messages published, dropped at the in-flight bound, and failed.
    published: int = 0
    dropped: int = 0
    failed: int = 0
    #: Messages received and overwritten unread in this worker's mailbox.
    received: int = 0
    lost: int = 0
    #: Relative fall of the worker's loss per second (>= 0; 0 if unknown).
    progress: float = 0.0
    #: Bytes of a whole-state message (message_size 1).
    state_bytes: int = 0
    #: CPU seconds of the worker's event loop over the period (for the record;
    #: already counted in ``exchange_seconds``).
    loop_seconds: float = 0.0
    #: Seconds of wall time the period lasted (0 if unknown): the counters'
    #: rates, for the dashboard page.
    period: float = 0.0
    #: Merges over the period (blocks that received at least one message),
    #: and summed over them: how far each merge moved the merged columns, and
    #: how far the worker's own training had moved the same columns since its
    #: previous exchange (Euclidean norms).
    merges: int = 0
    merge_shift: float = 0.0
    local_move: float = 0.0
    #: Merges left out of ``merges``: a test that judges the whole state
    #: (K-Means) rejected every received state. A peer whose centers lie in
    #: another arrangement moves nothing, however much the accepted merges
    #: buy; such a merge is neither benefit nor cost.
    rejected_merges: int = 0

    @property
    def benefit(self) -> float | None:
        """How far merges moved the state against the worker's own training.

        None when nothing was merged over the period.
        """
        if self.merges <= 0 or self.local_move <= 0:
            return None
        return self.merge_shift / self.local_move


@dataclass
class Settings:
    """What the law decides for one worker."""

    send_interval: int
    message_size: float
    #: Why the last change was made (for events and the history).
    reason: str = field(default="initial", compare=False)


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


class BalancingPolicy:
    """Adapt a worker's send interval and message size (see module docstring).

    Parameters
    ----------
    limits : PolicyLimits
        Bounds and constants.
    """

    def __init__(self, limits: PolicyLimits) -> None:
        self.limits = limits

    def target_send_time(
        self, signals: WorkerSignals, paying: bool = False
    ) -> tuple[float, str]:
        """Seconds between two sends this worker can afford, and why.

        ``paying=True`` (exchange pays) spends the whole link, not
        ``link_share`` of it, counts only failed sends as congestion (a
        publish dropped at the in-flight bound or a message overwritten in a
        mailbox costs little; merging less often costs the model) and leaves
        out the progress stretch.
        """
        limits = self.limits
        cpu_bound = signals.exchange_seconds / limits.cpu_budget
        share = limits.paying_link_share if paying else limits.link_share
        link_bound = signals.send_latency / share
        send_time, reason = (
            (cpu_bound, "cpu") if cpu_bound >= link_bound else (link_bound, "link")
        )
        attempted = signals.published
        undelivered = signals.failed + (0 if paying else signals.dropped)
        if attempted > 0 and undelivered > 0:
            # The link did not keep up: stretch by the share that was lost.
            send_time *= 1.0 + 2.0 * undelivered / attempted
            reason = "congestion"
        if not paying and signals.received > 0 and signals.lost > 0:
            send_time *= 1.0 + signals.lost / signals.received
            reason = "congestion"
        if not paying and signals.progress > 0:
            factor = 1.0 + (limits.max_progress_stretch - 1.0) * min(
                1.0, signals.progress / limits.fast_progress
            )
            if factor > 1.05:
                send_time *= factor
                reason = f"{reason}+progress"
        return send_time, reason

    def first_message_size(self, state_bytes: int, requested: float) -> float:
        """The smallest message this law sends for a state of ``state_bytes``.

        ``min_message_size`` of the state, but no block under
        ``min_bytes_to_split`` (a whole state if it is that small), and never
        more than ``requested``. A worker starts with it: the law grows it in
        a few reports when the link has room.
        """
        limits = self.limits
        if state_bytes <= 0:
            return requested
        floor = max(limits.min_message_size, limits.min_bytes_to_split / state_bytes)
        return min(requested, _clip(floor, limits.min_message_size, 1.0))

    def first_send_interval(
        self, requested: int, rows_per_epoch: int, report_exchanges: int | None
    ) -> int:
        """The send interval a worker starts with.

        The law acts only on reports, and a report waits for
        ``report_exchanges`` exchanges (or a report period, longer than a
        short fit). So the worker starts at ``requested``, but no longer than
        lets ``report_exchanges`` exchanges happen in the first quarter of its
        first epoch: a worker holding few rows otherwise ends its fit at the
        user's guess, however much exchange pays. Where it buys nothing, the
        law grows the interval again from the first report on.
        """
        if report_exchanges is None or rows_per_epoch <= 0:
            return requested
        within = rows_per_epoch // (4 * report_exchanges)
        return min(requested, max(within, self.limits.min_send_interval))

    def decide(self, current: Settings, signals: WorkerSignals) -> Settings:
        """New settings for a worker from its current ones and its signals.

        Parameters
        ----------
        current : Settings
            What the worker runs with now.
        signals : WorkerSignals
            What it measured since the last decision.

        Returns
        -------
        Settings
            ``current`` itself when nothing should change.
        """
        limits = self.limits
        if signals.samples_per_second <= 0:
            return current
        benefit = signals.benefit
        pays = benefit is not None and benefit >= limits.useful_benefit
        useless = benefit is not None and benefit < limits.useless_benefit
        # Merges that move the state about as far as training (unclear), or
        # only states rejected whole (nothing to judge by): exchange is not
        # shown useless, so the interval holds where the last judged period
        # put it unless the link fails (see the module docstring).
        holds = (
            not pays
            and not useless
            and (benefit is not None or signals.rejected_merges > 0)
        )
        send_time, reason = self.target_send_time(signals, paying=pays or holds)
        message_size, send_time, reason = self._message_size(
            current, signals, send_time, reason, useless
        )
        affordable = max(send_time * signals.samples_per_second, 1.0)
        if useless:
            # Move away from exchanging; the rare sends left are the probes.
            target = max(affordable, current.send_interval * limits.growth)
            reason = f"{reason}; exchange buys little"
        elif pays:
            # Every report at a longer interval than affordable forgoes merges
            # that pay: go to the cost bound at once.
            target = affordable
            reason = f"{reason}; exchange pays"
        else:
            # Benefit unknown or unclear: the cost law may only lengthen.
            target = max(affordable, current.send_interval)
        return self._settle(current, target, message_size, reason, smooth=not pays)

    def _message_size(
        self,
        current: Settings,
        signals: WorkerSignals,
        send_time: float,
        reason: str,
        useless: bool,
    ) -> tuple[float, float, str]:
        """The message size, the send time for it, and why."""
        limits = self.limits
        message_size = current.message_size
        # The interval bound in samples is also a bound in time.
        max_time = min(
            limits.max_send_time,
            limits.max_send_interval / signals.samples_per_second,
        )
        splittable = signals.state_bytes * message_size / 2 >= limits.min_bytes_to_split
        if message_size > limits.min_message_size and splittable and useless:
            message_size = max(message_size / 2.0, limits.min_message_size)
            reason = f"{reason}: smaller messages"
        elif (
            send_time > max_time
            and message_size > limits.min_message_size
            and splittable
        ):
            # States would go stale: send smaller messages, as often as the
            # link allows. Transfer time scales with the message size.
            message_size = _clip(
                message_size * max_time / send_time,
                limits.min_message_size,
                limits.max_message_size,
            )
            reason = f"{reason}: smaller messages"
        elif (
            not useless
            and send_time < 0.25 * max_time
            and message_size < limits.max_message_size
        ):
            # Room on the link: grow messages back before sending more often.
            message_size = _clip(
                message_size * 2.0, limits.min_message_size, limits.max_message_size
            )
            reason = f"{reason}: larger messages"
        send_time *= message_size / current.message_size
        return message_size, send_time, reason

    def _settle(
        self,
        current: Settings,
        target: float,
        message_size: float,
        reason: str,
        smooth: bool = True,
    ) -> Settings:
        """Smooth the move to ``target``; ``current`` if it is too small."""
        limits = self.limits
        ratio = target / current.send_interval
        if smooth and ratio <= limits.jump_ratio:
            smoothed = math.exp(
                limits.smoothing * math.log(target)
                + (1.0 - limits.smoothing) * math.log(current.send_interval)
            )
        else:
            smoothed = target
        interval = round(
            _clip(smoothed, limits.min_send_interval, limits.max_send_interval)
        )
        interval_change = abs(interval - current.send_interval) / current.send_interval
        size_change = abs(message_size - current.message_size) / current.message_size
        if interval_change < limits.deadband and size_change < limits.deadband:
            return current
        return Settings(interval, message_size, reason)
