"""PyTorch twins of the M-series networks, built from the same spec table as etlkit's models.

The twin parses `train.models.spec(name).layers` (paper notation), so a change to the table
changes both networks. Conventions follow docs/m-series.md: 3x3 'same' conv without bias ->
BatchNorm (eps 1e-3, momentum 0.01, Keras' 0.99 in PyTorch's convention) -> ReLU -> Dropout;
2x2 max-pool; hidden Linear without bias -> BatchNorm1d -> ReLU -> Dropout; output Linear with
bias. Only the benchmarks import this module (torch is not an etlkit dependency).
"""

import torch
from torch import nn

from train import models


def build(name: str, num_classes: int) -> nn.Sequential:
    """The twin of `train.models.build(name, num_classes)`, float32, in training mode, with
    channels-last activations (oneDNN's fast layout on the CPU)."""
    s = models.spec(name)
    if (s.family, s.kernel_size, s.padding, s.batch_norm, s.activation, s.pool) != (
            "M", 3, "SAME", True, "relu", "max"):
        raise ValueError(f"{name}: the twin implements only the M-series conventions")
    layers: list[nn.Module] = []
    side, channels, features = s.input_size, 1, None
    for token in (t.strip() for t in s.layers.split(",")):
        if token == "P":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        elif token.startswith("FC-"):
            if features is None:
                # Flax flattens NHWC; the twin flattens NCHW: a permutation of the same weights.
                layers.append(nn.Flatten())
                features = side * side * channels
            n = int(token[3:])
            layers += [nn.Linear(features, n, bias=False), nn.BatchNorm1d(n, 1e-3, 0.01),
                       nn.ReLU(), nn.Dropout(0.5)]
            features = n
        else:
            n = int(token)
            layers += [nn.Conv2d(channels, n, 3, padding=1, bias=False),
                       nn.BatchNorm2d(n, 1e-3, 0.01), nn.ReLU(), nn.Dropout(0.5)]
            channels = n
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers).to(memory_format=torch.channels_last).train()


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_step(model: nn.Module):
    """A training step on uint8 images (B, 64, 64), normalised inside as etlkit's is, with the
    paper's Adam; fused (one pass per tensor, as XLA fuses etlkit's update), since the default
    per-op update is memory-bound on the 155M-parameter networks."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                                 fused=True)

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(images.unsqueeze(1).float().div_(255))
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step
