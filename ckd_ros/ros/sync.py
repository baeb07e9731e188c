"""RGB + thermal pairing by header stamp.

``message_filters.ApproximateTimeSynchronizer`` is used where the package exists (a ROS install);
otherwise ``ApproxTimePairer``, an equivalent policy of ours, behind the same small interface:
each arriving message is matched with the other stream's message of nearest stamp if they are
within ``slop`` seconds; a match consumes both and discards anything older (counted); unmatched
messages wait in a queue of ``queue_size`` per stream (overflow counted).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from sensor_msgs.msg import Image

from ckd_ros.ros.conversions import stamp_seconds

PairCallback = Callable[[Any, Any], None]


class ApproxTimePairer:
    """Pure policy (no ROS): feed ``add(stream, stamp, msg)``; ``on_pair(rgb, thermal)`` fires on a match."""

    def __init__(self, slop: float, queue_size: int, on_pair: PairCallback) -> None:
        self.slop, self.queue_size, self.on_pair = slop, queue_size, on_pair
        self.queues: tuple[deque, deque] = (deque(), deque())
        self.received = [0, 0]
        self.pairs = 0
        self.dropped = 0  # messages discarded without a partner
        self._lock = threading.Lock()

    def add(self, stream: int, stamp: float, msg: Any) -> None:
        with self._lock:
            self.received[stream] += 1
            other = self.queues[1 - stream]
            best = min(range(len(other)), key=lambda k: abs(other[k][0] - stamp), default=None)
            if best is not None and abs(other[best][0] - stamp) <= self.slop:
                partner = other[best][1]
                self.dropped += best  # older unmatched messages of the other stream
                for _ in range(best + 1):
                    other.popleft()
                mine = self.queues[stream]
                while mine and mine[0][0] <= stamp:
                    mine.popleft()
                    self.dropped += 1
                self.pairs += 1
                pair = (msg, partner) if stream == 0 else (partner, msg)
            else:
                mine = self.queues[stream]
                mine.append((stamp, msg))
                while len(mine) > self.queue_size:
                    mine.popleft()
                    self.dropped += 1
                return
        self.on_pair(*pair)


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


class PairSync:
    """Subscribe to both image topics and call ``on_pair(rgb_msg, thermal_msg)`` per matched pair.

    ``msg_types``: the message type of each stream (``sensor_msgs/Image``, or ``CompressedImage``
    for a ``<topic>/compressed`` stream); both carry a header, which is all pairing reads."""

    def __init__(
        self,
        node,
        rgb_topic: str,
        thermal_topic: str,
        qos,
        slop: float,
        queue_size: int,
        on_pair: PairCallback,
        prefer_message_filters: bool = True,
        on_message: Callable[[int, Any], None] | None = None,
        msg_types: tuple[type, type] = (Image, Image),
    ) -> None:
        """``on_message(stream, msg)`` sees every arriving message (0 = RGB, 1 = thermal), e.g. for
        rates and loss."""
        self.on_pair = on_pair
        self.on_message = on_message
        self.counts = [0, 0]
        self.pairs = 0
        self.backend = "message_filters" if prefer_message_filters and message_filters_available() else "ckd_ros"
        if self.backend == "message_filters":
            import message_filters

            topics = (rgb_topic, thermal_topic)
            subs = [message_filters.Subscriber(node, kind, t, qos_profile=qos) for kind, t in zip(msg_types, topics)]
            for k, s in enumerate(subs):
                s.registerCallback(lambda m, k=k: self._count(k, m))
            self._sync = message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop)
            self._sync.registerCallback(self._paired)
            self._subs = subs
            self.pairer = None
        else:
            self.pairer = ApproxTimePairer(slop, queue_size, self._paired)
            self._subs = [
                node.create_subscription(kind, t, lambda m, k=k: self._add(k, m), qos)
                for k, (kind, t) in enumerate(zip(msg_types, (rgb_topic, thermal_topic)))
            ]

    def _count(self, k: int, msg: Any) -> None:
        self.counts[k] += 1
        if self.on_message is not None:
            self.on_message(k, msg)

    def _add(self, k: int, msg: Any) -> None:
        self._count(k, msg)
        self.pairer.add(k, stamp_seconds(msg.header.stamp), msg)

    def _paired(self, rgb: Image, thermal: Image) -> None:
        self.pairs += 1
        self.on_pair(rgb, thermal)

    @property
    def unpaired_dropped(self) -> int:
        return self.pairer.dropped if self.pairer is not None else -1  # message_filters does not report it

    def destroy(self, node) -> None:
        """Remove the subscriptions from ``node`` (lifecycle cleanup)."""
        for sub in self._subs:
            node.destroy_subscription(getattr(sub, "sub", sub))  # message_filters.Subscriber wraps one
