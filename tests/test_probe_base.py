"""The probe base class: its cache key comes from its fields, tensors by fingerprint."""

import dataclasses

import torch

from bnlib.probes import Probe, StepProbe, fingerprint


@dataclasses.dataclass
class _Counter(Probe):
    inputs: torch.Tensor
    every: int = 2
    name: str = "counter"

    def start(self, model):
        self.steps = []

    def after_step(self, step, model, inputs, targets):
        if self.due(step):
            self.steps.append(step)

    def result(self):
        return {"step": self.steps}


def test_key_holds_every_field_and_the_class_name():
    probe = _Counter(torch.zeros(3))
    assert probe.key() == {"probe": "_Counter", "inputs": fingerprint(torch.zeros(3)),
                           "every": 2, "name": "counter"}
    assert _Counter(torch.ones(3)).key() != probe.key()
    assert _Counter(torch.zeros(3), every=3).key() != probe.key()


def test_state_set_in_start_stays_out_of_the_key():
    probe = _Counter(torch.zeros(3))
    before = probe.key()
    probe.start(None)
    for step in range(1, 6):
        probe.after_step(step, None, None, None)
    assert probe.result() == {"step": [2, 4]}
    assert probe.key() == before
    assert isinstance(probe, StepProbe)


def test_fingerprint_tells_dtype_shape_and_values_apart():
    a = torch.zeros(2, 3)
    assert fingerprint(a) == fingerprint(a.clone())
    assert fingerprint(a) != fingerprint(a.double())
    assert fingerprint(a) != fingerprint(a.reshape(3, 2))
    assert fingerprint(a) != fingerprint(a + 1)
