"""Prints the scalars of TensorBoard runs as JSON, read by TensorBoard's own event reader.

Usage: python scripts/tensorboard_scalars.py LOGDIR RUN...
Output: {"RUN": {"TAG": [[step, value], ...], ...}, ...}. Used by tests/tensorboard.rs to check that the
event files modelc's TensorBoard callback writes open in TensorBoard. The reader checks every record's
CRC-32C and fails on a corrupt file.
"""

import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator


def scalars(run_dir):
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def main():
    logdir, runs = sys.argv[1], sys.argv[2:]
    print(json.dumps({run: scalars(os.path.join(logdir, run)) for run in runs}))


if __name__ == "__main__":
    main()
