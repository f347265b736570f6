"""A PyTorch peer of the airbench94 preset's training step, for the bench (not a dependency).

    python benchmarks/torch_peer.py --data_dir=data/cifar10 --precision=bfloat16 --steps=20

The same network as ``cifar10.model``'s airbench94 and Keller Jordan's
airbench94.py (a 2x2 whitening convolution and GELU; three groups of conv
3x3, max-pool 2, batch norm without scale, GELU, conv 3x3, batch norm,
GELU; max-pool 3; a linear layer scaled by 1/9), the same batch (1,024),
loss (summed cross-entropy with label smoothing 0.2), optimizer (Nesterov
SGD, momentum 0.85, the batch-norm biases at 64 times the rate, decoupled
weight decay as airbench94.py words it, its triangle schedule) and
augmentation (flips alternating by epoch, a random shift of up to 2 pixels
from reflection padding), with Lookahead every 5 steps, on the same
CIFAR-10 binary files, read with numpy. Run as PyTorch's CPU performance
guide recommends: channels-last tensors, ``torch.set_num_threads`` at the
cores, ``torch.autocast("cpu", torch.bfloat16)`` for bfloat16, gradients
set to None, no compilation. Prints one JSON line: examples/s over
``--steps`` steps after ``--warmup_steps``.

    python benchmarks/torch_peer.py --conv_passes --precision=bfloat16

instead times each of airbench94's 3x3 convolution shapes' three passes
(forward, input gradient, kernel gradient) at batch 1,024, as
``benchmarks/conv_grad_bench.py --model=airbench94`` does TensorFlow's.
"""

import argparse
import json
import os
import time

import numpy as np

RECORD = 3073  # label byte + 32 x 32 x 3 pixels, planes red, green, blue
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
BATCH = 1024
LOOKAHEAD_EVERY = 5


def read_training_images(data_dir):
    """CIFAR-10's five training files as uint8 [N, 3, 32, 32] and int64 labels [N]."""
    folder = os.path.join(data_dir, "cifar-10-batches-bin")
    raw = np.concatenate([
        np.fromfile(os.path.join(folder, f"data_batch_{i}.bin"), np.uint8).reshape(-1, RECORD)
        for i in range(1, 6)])
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def make_net(torch):
    """airbench94's network, float32 weights in channels-last layout."""
    nn = torch.nn

    def conv(c_in, c_out, kernel=3, padding="same", bias=False):
        layer = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias)
        with torch.no_grad():
            nn.init.dirac_(layer.weight[:c_in])  # the identity in its first channels
            if bias:
                layer.bias.zero_()
        return layer

    def norm(channels):
        layer = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
        layer.weight.requires_grad = False  # no scale: the bias only
        return layer

    def group(c_in, c_out):
        return nn.Sequential(conv(c_in, c_out), nn.MaxPool2d(2), norm(c_out), nn.GELU(),
                             conv(c_out, c_out), norm(c_out), nn.GELU())

    whiten = conv(3, 24, kernel=2, padding=0, bias=True)
    whiten.weight.requires_grad = False  # set from the data in airbench94.py, then frozen
    net = nn.Sequential(whiten, nn.GELU(), group(24, 64), group(64, 256), group(256, 256),
                        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False))
    return net.to(memory_format=torch.channels_last)


def batches(torch, images, labels, seed):
    """Endless training batches: normalized, flipped every other epoch, shifted by up to 2
    pixels, in a new order each epoch."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    normalized = (torch.from_numpy(images).float() / 255 - mean) / std
    padded = torch.nn.functional.pad(normalized, (2,) * 4, mode="reflect")
    labels = torch.from_numpy(labels)
    epoch = 0
    while True:
        source = padded.flip(-1) if epoch % 2 else padded
        shifts = torch.randint(0, 5, (len(labels), 2), generator=generator)
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order) - BATCH + 1, BATCH):
            index = order[start:start + BATCH]
            # One shift per batch row: gathered per example with a 2-d index.
            rows = shifts[index, 0, None] + torch.arange(32)
            cols = shifts[index, 1, None] + torch.arange(32)
            crops = source[index[:, None, None, None], torch.arange(3)[None, :, None, None],
                           rows[:, None, :, None], cols[:, None, None, :]]
            yield crops.contiguous(memory_format=torch.channels_last), labels[index]
        epoch += 1


def trainer(torch, net, total_steps):
    """One training step of airbench94.py's recipe (loss, Nesterov SGD, Lookahead)."""
    momentum = 0.85
    scale = 1024 * (1 + 1 / (1 - momentum))
    lr, wd = 11.5 / scale, 0.0153 * BATCH / scale
    norm_biases = [p for n, p in net.named_parameters() if p.requires_grad and p.dim() == 1
                   and n != "0.bias"]
    others = [p for p in net.parameters() if p.requires_grad
              and all(p is not q for q in norm_biases)]
    optimizer = torch.optim.SGD([dict(params=norm_biases, lr=lr * 64, weight_decay=wd / (lr * 64)),
                                 dict(params=others, lr=lr, weight_decay=wd / lr)],
                                momentum=momentum, nesterov=True)
    peak = int(0.23 * total_steps)
    schedule = lambda i: (0.2 + 0.8 * i / peak if i < peak  # noqa: E731
                          else 1 - 0.93 * (i - peak) / max(1, total_steps - peak))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum")
    slow = [p.detach().clone() for p in net.parameters()]
    state = {"step": 0}

    def step(inputs, labels, autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = net(inputs) / 9
            loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        if state["step"] % LOOKAHEAD_EVERY == 0:
            decay = 0.95 ** LOOKAHEAD_EVERY * (state["step"] / total_steps) ** 3
            with torch.no_grad():
                for s, p in zip(slow, net.parameters()):
                    s.lerp_(p, 1 - decay)
                    p.copy_(s)
        return loss

    return step


def measure(data_dir, precision, warmup_steps, steps, threads=0, seed=0):
    """examples/s of the training step over ``steps`` after ``warmup_steps``."""
    import torch
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    images, labels = read_training_images(data_dir)
    net = make_net(torch).train()
    step = trainer(torch, net, total_steps=warmup_steps + steps)
    data = batches(torch, images, labels, seed)
    autocast = precision == "bfloat16"
    for _ in range(warmup_steps):
        step(*next(data), autocast)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(data), autocast)
    float(loss.detach())  # waits for the last step
    elapsed = time.perf_counter() - start
    return {"torch_examples_per_sec": steps * BATCH / elapsed, "precision": precision,
            "torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "steps": steps}


# (side, channels in, channels out) of airbench94's 3x3 convolutions (conv_grad_bench.py's).
CONV_SHAPES = ((31, 24, 64), (15, 64, 64), (15, 64, 256), (7, 256, 256), (3, 256, 256))


def conv_passes(precision, threads, repeats=5):
    """Milliseconds per call of each shape's forward pass, input and kernel gradients."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    print(f"PyTorch {torch.__version__}, {precision}, batch {BATCH}: milliseconds per call")
    print("side  in  out  forward  input-grad  kernel-grad")

    def milliseconds(fn):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats * 1000

    for side, channels_in, channels_out in CONV_SHAPES:
        layout = dict(memory_format=torch.channels_last)
        x = torch.randn(BATCH, channels_in, side, side).to(dtype=dtype, **layout)
        w = torch.randn(channels_out, channels_in, 3, 3).to(dtype=dtype, **layout)
        dy = torch.randn(BATCH, channels_out, side, side).to(dtype=dtype, **layout)

        def backward(which):
            return lambda: torch.ops.aten.convolution_backward(
                dy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, which)

        times = (milliseconds(lambda: torch.nn.functional.conv2d(x, w, padding=1)),
                 milliseconds(backward([True, False, False])),
                 milliseconds(backward([False, True, False])))
        print(f"{side:4d} {channels_in:4d} {channels_out:4d} {times[0]:8.0f} {times[1]:11.0f} "
              f"{times[2]:12.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir")
    parser.add_argument("--conv_passes", action="store_true")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.conv_passes:
        return conv_passes(args.precision, args.threads)
    if not args.data_dir:
        parser.error("--data_dir is required")
    print(json.dumps(measure(args.data_dir, args.precision, args.warmup_steps, args.steps,
                             args.threads)))


if __name__ == "__main__":
    main()
