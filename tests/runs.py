"""Training runs as the trainer tests start and read them: the `etlkit train` command line
and the TensorBoard event files a run writes."""

import struct

from tensorboardX.proto.event_pb2 import Event


def train_args(shards, out, *extra, epochs=2, progress=False, model="M6-1"):
    """`etlkit train` of `shards`, by default with the shared run's network (M6-1)."""
    return ["train", str(shards), "--out", str(out), "--model", model, "--epochs", str(epochs),
            "--log-every", "5", *([] if progress else ["--no-progress"]), *extra]


def run_events(run):
    """The run's TensorBoard event files, oldest first, each as its list of events, read with
    the protobuf classes tensorboardX writes them with (TFRecord framing: length, crc, event,
    crc)."""
    files = []
    for path in sorted(run.glob("events.out.tfevents.*")):
        data, at, events = path.read_bytes(), 0, []
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            events.append(Event.FromString(data[at + 12:at + 12 + length]))
            at += 12 + length + 4
        files.append(events)
    return files
