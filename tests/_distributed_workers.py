"""Functions the multi-process tests run in each process of a :func:`bnlib.distributed.launch`
group (module level, so that they pickle), and the single-process references they are checked
against (plain loops written here, independent of the code under test)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from bnlib import nn as bnlib_nn
from bnlib.distributed import rank, world_size
from bnlib.training.data_parallel import train_data_parallel

CHANNELS, SIDE, CLASSES = 3, 6, 3


def tiny_net(norm=nn.BatchNorm2d, dtype=torch.float64, seed=0) -> nn.Sequential:
    """Two 3x3 convolutions of 3 channels, each followed by ``norm(3)`` and a ReLU, then a
    linear layer: input (N, 1, 6, 6), 3 classes. ``seed`` fixes the initial weights."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, CHANNELS, 3, padding=1), norm(CHANNELS), nn.ReLU(),
        nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1), norm(CHANNELS), nn.ReLU(),
        nn.Flatten(), nn.Linear(CHANNELS * SIDE * SIDE, CLASSES),
    ).to(dtype)


def tiny_data(n: int, dtype=torch.float64, seed=1):
    """``n`` random images (N, 1, 6, 6) with a large mean, and labels (N,)."""
    generator = torch.Generator().manual_seed(seed)
    images = 3.0 + 2.0 * torch.randn(n, 1, SIDE, SIDE, generator=generator, dtype=dtype)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    return images, labels


def reference_train(model, images, labels, batch_size, epochs, lr, shuffle_seed, micro=None,
                    on_step=None):
    """The single-process loop: mean cross-entropy of each batch, SGD with momentum 0.9; with
    ``micro``, each batch in micro-batches of ``micro`` whose gradients add up."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    shuffle = torch.Generator().manual_seed(shuffle_seed)
    model.train()
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=shuffle)
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            for part in torch.split(batch, micro or len(batch)):
                logits = model(images[part])
                loss = nn.functional.cross_entropy(logits, labels[part], reduction="sum")
                (loss / len(batch)).backward()
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step, model)
    return model


def ddp_run(norm: str, n: int, batch_size: int, epochs: int, lr: float, broadcast_buffers=True,
            accumulation=1, steps=None, join=True):
    """One replica of a data-parallel run of :func:`tiny_net` (``norm``: ``"batch"`` for
    torch's BatchNorm2d, ``"sync"`` for it converted to bnlib's SyncBatchNorm); returns its
    state_dict and the train function's outcome."""
    model = tiny_net()
    if norm == "sync":
        model = bnlib_nn.SyncBatchNorm.convert_sync_batchnorm(model)
    images, labels = tiny_data(n)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    outcome = train_data_parallel(
        model, images, labels, optimizer, batch_size=batch_size, epochs=epochs,
        shuffle=torch.Generator().manual_seed(2), accumulation=accumulation,
        broadcast_buffers=broadcast_buffers, steps=steps, join=join)
    return {"state": model.state_dict(), **outcome}


def ddp_runs(runs):
    """:func:`ddp_run` for each keyword dict of ``runs``, in one group."""
    return [ddp_run(**kwargs) for kwargs in runs]


def uneven_steps(norm: str):
    """Rank r takes 3 + r optimiser steps (DDP's join must end every rank at 3)."""
    return ddp_run(norm, n=64, batch_size=4 * world_size(), epochs=1, lr=0.05,
                   steps=3 + rank())


def fail_on_rank_one():
    """Rank 1 raises; the others wait in a collective that rank 1 never joins."""
    if rank() == 1:
        raise ValueError("rank 1 cannot go on")
    dist.all_reduce(torch.ones(1))
    return os.getpid()


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` has open."""
    inodes = set()
    folder = f"/proc/{pid}/fd"
    for name in os.listdir(folder):
        try:
            target = os.readlink(os.path.join(folder, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _address(hex_address: str) -> str:
    """``/proc/net/tcp{,6}``'s hexadecimal local address as text (IPv4 or IPv6)."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets(pids) -> list[tuple[str, int, int]]:
    """``(address, port, pid)`` of every TCP socket in the LISTEN state held by one of
    ``pids``, read from ``/proc/net/tcp`` and ``/proc/net/tcp6``."""
    owners = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in owners:
                    address, port = local.split(":")
                    found.append((_address(address), int(port, 16), owners[inode]))
    return found


def sockets_while_up(launcher_pid: int):
    """The listening sockets of the launcher and of this process, read while the whole group
    is up (every rank has joined and run a collective, and waits for the others to read)."""
    dist.all_reduce(torch.ones(1))
    found = listening_sockets([launcher_pid, os.getpid()])
    dist.barrier()
    return found


def environment_and_sum():
    """torchrun's variables as this process sees them, and an all-reduce over the group."""
    total = torch.tensor([float(rank() + 1)])
    dist.all_reduce(total)
    return {name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")} | {
        "sum": float(total), "world": world_size(), "pid": os.getpid()}


# --------------------------------------------------------------------------- SyncBatchNorm cases


def case_batches(case: dict, step: int):
    """The whole group's input (N, C, 4, 4) and upstream gradient of one step of ``case``
    (``shards``, ``dtype``, ``channels``, optional ``mean``, ``seed``), the same on every rank."""
    dtype = getattr(torch, case["dtype"])
    generator = torch.Generator().manual_seed(case.get("seed", 0) * 100 + step)
    n, channels = sum(case["shards"]), case.get("channels", 3)
    side = case.get("side", 4)
    x = torch.randn(n, channels, side, side, generator=generator, dtype=torch.float64)
    x = x + case.get("mean", 0.0)
    x = x + torch.arange(channels, dtype=torch.float64).view(1, -1, 1, 1)
    grad = torch.randn(n, channels, side, side, generator=generator, dtype=torch.float64)
    return x.to(dtype), grad.to(dtype)


def case_layer_values(case: dict):
    """Weight and bias values of ``case``'s layers (C,), float64."""
    channels = case.get("channels", 3)
    generator = torch.Generator().manual_seed(7)
    return (1.0 + torch.rand(channels, generator=generator, dtype=torch.float64),
            torch.randn(channels, generator=generator, dtype=torch.float64))


def set_affine(layer, case):
    weight, bias = case_layer_values(case)
    if layer.weight is not None:
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)


def sync_bn_case(case: dict, group=None, my_slot=None):
    """This rank's outputs of ``case``: its shard through a :class:`bnlib.nn.SyncBatchNorm`
    (options ``case["options"]``) for ``case["steps"]`` training steps: per step the shard's
    output and input gradient and the layer's weight and bias gradients; at the end the
    buffers."""
    shards = case["shards"]
    slot = rank() if my_slot is None else my_slot
    start = sum(shards[:slot])
    dtype = getattr(torch, case["dtype"])
    layer = bnlib_nn.SyncBatchNorm(case.get("channels", 3), process_group=group,
                                   **case.get("options", {})).to(dtype)
    set_affine(layer, case)
    steps = []
    for step in range(case.get("steps", 2)):
        x, grad = case_batches(case, step)
        mine = x[start : start + shards[slot]].clone().requires_grad_(True)
        if layer.weight is not None:
            layer.weight.grad = None
            layer.bias.grad = None
        y = layer(mine)
        (y * grad[start : start + shards[slot]]).sum().backward()
        steps.append({"y": y.detach(), "dx": mine.grad,
                      "dweight": None if layer.weight is None else layer.weight.grad.clone(),
                      "dbias": None if layer.bias is None else layer.bias.grad.clone()})
    return {"steps": steps, "buffers": {k: v.clone() for k, v in layer.named_buffers()}}


def sync_bn_cases(cases):
    """:func:`sync_bn_case` for each case, in one group."""
    return [sync_bn_case(case) for case in cases]


def subgroup_case(case: dict, size: int):
    """:func:`sync_bn_case` with the layer synchronised within subgroups of ``size`` ranks
    (``torch.distributed.new_subgroups``)."""
    group, _ = dist.new_subgroups(group_size=size)
    return sync_bn_case(case, group=group)


def count_sync_collectives(steps: int = 2):
    """The collectives bnlib's SyncBatchNorm calls while :func:`tiny_net` (two layers of 3
    channels), converted, trains ``steps`` steps under DDP: ``[(name, values)]`` per call."""
    import bnlib.nn.sync_batchnorm as module

    calls = []
    real_gather, real_reduce = module.dist.all_gather, module.dist.all_reduce

    def gather(outputs, tensor, *args, **kwargs):
        calls.append(("all_gather", tensor.numel()))
        return real_gather(outputs, tensor, *args, **kwargs)

    def reduce(tensor, *args, **kwargs):
        calls.append(("all_reduce", tensor.numel()))
        return real_reduce(tensor, *args, **kwargs)

    module.dist.all_gather, module.dist.all_reduce = gather, reduce
    try:
        # without join(): its bookkeeping all-reduces would be counted too
        ddp_run("sync", n=8 * steps, batch_size=8, epochs=1, lr=0.05, join=False)
    finally:
        module.dist.all_gather, module.dist.all_reduce = real_gather, real_reduce
    return calls
