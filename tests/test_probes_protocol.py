"""Every probe follows the protocol, pickles, keeps its key from its fields, records every k
steps, and leaves the training it watches exactly as it would have been."""

import pickle

import pytest
import torch
from probe_models import noisy_model, sgd_steps
from torch import nn

from bnlib.probes import (
    AccuracyProbe,
    ActivationPercentileProbe,
    ICSProbe,
    LandscapeProbe,
    StepProbe,
    fingerprint,
)


def all_probes():
    torch.manual_seed(5)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    return [
        ActivationPercentileProbe(x, every=2),
        AccuracyProbe(x, y, every=3),
        ICSProbe(x, y, layer=1, lr=0.5, every=2),
        LandscapeProbe(x, y, step_sizes=(0.1, 0.5), every=3),
    ]


def test_probes_do_not_change_the_training_they_watch():
    plain = sgd_steps(noisy_model(), [])
    watched = sgd_steps(noisy_model(), all_probes())
    for a, b in zip(plain.state_dict().values(), watched.state_dict().values()):
        assert torch.equal(a, b)


def test_probes_follow_the_protocol_pickle_and_record_every_k_steps():
    probes = all_probes()
    for probe in probes:
        assert isinstance(probe, StepProbe)
        pickle.loads(pickle.dumps(probe))
    sgd_steps(noisy_model(), probes)
    for probe in probes:
        pickle.loads(pickle.dumps(probe))
        result = probe.result()
        every = probe.key()["every"]
        assert result["step"] == [float(s) for s in range(0, 7, every)]
        assert all(len(v) == len(result["step"]) for v in result.values())
        assert all(isinstance(v, float) for values in result.values() for v in values)
    assert set(probes[0].result()) == {"step", "p15", "p50", "p85"}


def test_keys_come_from_the_fields_with_tensors_by_fingerprint():
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    key = ICSProbe(x, y, layer=1, lr=0.5).key()
    assert key == {"probe": "ICSProbe", "inputs": fingerprint(x), "targets": fingerprint(y),
                   "layer": 1, "lr": 0.5, "every": 10, "loss": "cross_entropy", "seed": 0,
                   "name": "ics"}
    assert ICSProbe(x, y, layer=1, lr=0.5, seed=1).key() != key
    assert ICSProbe(x + 1, y, layer=1, lr=0.5).key() != key


def test_probe_copies_its_batch_so_later_changes_do_not_move_the_key():
    x = torch.zeros(3, 4)
    probe = ActivationPercentileProbe(x)
    before = probe.key()
    x += 1
    assert probe.key() == before


def test_every_must_be_positive():
    with pytest.raises(ValueError, match="every=0"):
        AccuracyProbe(torch.zeros(2, 2), torch.zeros(2), every=0)


def test_accuracy_probe_counts_argmax_hits():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 0, 1])  # the arg-max logits are 0, 1, 0, 1: three hits of four
    probe = AccuracyProbe(x, y, every=1)
    probe.start(model)
    assert probe.result() == {"step": [0.0], "accuracy": [0.75]}
