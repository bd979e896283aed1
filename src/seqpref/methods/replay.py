"""replay: sequential DPO in which stage k draws a fixed share of every micro-batch from the earlier
objectives' train pairs (experience replay, the standard continual-learning baseline; AIF-Gen ships it
for continual DPO).

Budget: a replay stage takes exactly the optimiser steps and micro-batch size of the ``dpo`` stage it
replaces (:func:`seqpref.train.stage_steps` of the stage's own train pairs), so the current objective
sees ``batch_size − round(share·batch_size)`` pairs per micro-batch, not a full epoch. Stage 1 has
nothing to replay and is plain DPO. The replayed pairs keep their own base log-probs as reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqpref.methods.base import SEQUENTIAL, Method


@dataclass
class ReplayOptions:
    """``method_options.replay``."""

    share: float = field(
        default=0.25,
        metadata={
            "help": "share of every micro-batch drawn from the earlier objectives' train pairs (pooled, seeded), in [0, 1).",
            "schema": {"minimum": 0, "exclusiveMaximum": 1},
        },
    )

    def __post_init__(self):
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"replay.share must be in [0, 1), got {self.share}")


def replayed_per_batch(share: float, batch_size: int) -> int:
    """Pairs of a micro-batch of ``batch_size`` drawn from the earlier objectives: round(share·batch_size),
    at most batch_size − 1 (every micro-batch keeps at least one pair of its own objective)."""
    return min(int(round(share * batch_size)), batch_size - 1)


class ReplayBatchSampler:
    """Micro-batches of ``[current objective's pairs; earlier objectives' pairs]`` (rows ``0..sizes[0]-1``
    are the current objective's, the rest the earlier ones', pooled).

    Each micro-batch holds ``batch_size − r`` rows of the current objective and ``r`` =
    :func:`replayed_per_batch` rows of the earlier pool, in that order. Both come from their own seeded
    stream of shuffled indices, reshuffled when used up; ``steps × accumulation`` micro-batches in all.
    """

    def __init__(self, sizes: list[int], batch_size: int, share: float, steps: int, seed: int, accumulation: int = 1):
        if len(sizes) < 2 or sum(sizes[1:]) == 0:
            raise ValueError("replay needs the train pairs of at least one earlier objective")
        self.current, self.pool = sizes[0], sum(sizes[1:])
        self.batch_size, self.steps, self.seed, self.accumulation = batch_size, steps, seed, accumulation
        self.replayed = replayed_per_batch(share, batch_size)
        if share > 0 and self.replayed == 0:
            raise ValueError(
                f"replay.share {share} of a batch of {batch_size} replays no pair (round half to even): "
                "raise the share or the batch size"
            )

    def __len__(self) -> int:
        return self.steps * self.accumulation

    def __iter__(self):
        rngs = [np.random.default_rng([self.seed, part]) for part in (0, 1)]
        streams: list[list[int]] = [[], []]
        sizes, offsets = (self.current, self.pool), (0, self.current)
        wanted = (self.batch_size - self.replayed, self.replayed)
        for _ in range(len(self)):
            batch = []
            for part in (0, 1):
                while len(streams[part]) < wanted[part]:
                    streams[part].extend((offsets[part] + rngs[part].permutation(sizes[part])).tolist())
                batch += streams[part][: wanted[part]]
                del streams[part][: wanted[part]]
            yield batch


def batches(options: ReplayOptions, sizes: list[int], batch_size: int, steps: int, seed: int, accumulation: int = 1):
    """The replay stage's batch sampler (see :class:`ReplayBatchSampler`)."""
    return ReplayBatchSampler(sizes, batch_size, options.share, steps, seed, accumulation)


METHOD = Method(
    name="replay",
    kind=SEQUENTIAL,
    options=ReplayOptions,
    colour="#CC79A7",
    summary="sequential DPO replaying a share of earlier objectives' pairs",
    batches=batches,
    sham=True,
    replays_earlier=True,
)
