"""bnlib.nn against PyTorch's own test material for its normalisation modules.

The samples come from ``torch.testing._internal.common_modules.module_db``, shipped in the
installed torch wheel: for every torch module bnlib replaces, its ``module_inputs_func`` gives
constructor arguments and inputs, its ``module_error_inputs_func`` the inputs torch rejects and
the exceptions it raises. Each sample runs through torch's module and bnlib's with the same state
(random parameters and running statistics, copied by ``load_state_dict``), in train and eval mode,
in float32 and float64 on the CPU (the dtypes and device bnlib claims), and we compare outputs,
input and parameter gradients, running buffers and state dicts (keys and values) with
``torch.testing.assert_close``'s default tolerances. Gradients are also checked on their own
with the ``gradcheck`` and ``gradgradcheck`` of torch's test suite (batched gradients on, float64).
A few behaviours torch's own ``test_nn.py`` checks follow at the end: empty batches, memory
format, ``LayerNorm(())``. (Importing torch's test utilities freezes ``torch.backends`` flags
for the rest of the pytest process; no bnlib code or test sets them.)
"""

from __future__ import annotations

import copy

import pytest
import torch

from torch.testing._internal import common_modules  # needs expecttest (requirements.txt)
from torch.testing._internal.common_modules import ModuleErrorEnum
from torch.testing._internal.common_utils import gradcheck, gradgradcheck

import bnlib.nn as bnn

NAMES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d",
         "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "RMSNorm")
INFOS = {info.module_cls.__name__: info for info in common_modules.module_db
         if info.module_cls.__name__ in NAMES}
DTYPES = (torch.float32, torch.float64)


def _samples(name: str, dtype: torch.dtype, training: bool) -> list:
    info = INFOS[name]
    return info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                   training=training)


def _cases(dtypes=DTYPES) -> list:
    """(name, dtype, training, index) for every module_db sample of a module bnlib replaces."""
    return [
        pytest.param(name, dtype, training, i,
                     id=f"{name}-{str(dtype)[6:]}-{'train' if training else 'eval'}-"
                        f"{sample.desc or i}")
        for name in NAMES for dtype in dtypes for training in (True, False)
        for i, sample in enumerate(_samples(name, dtype, training))
    ]


def _pair(name: str, sample, dtype: torch.dtype, training: bool, seed: int = 0):
    """torch's module with random state, and bnlib's with the same state."""
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    theirs = INFOS[name].module_cls(*args, **kwargs).to(dtype)
    ours = getattr(bnn, name)(*args, **kwargs).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in theirs.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=gen, dtype=dtype) + 0.5)
            elif key.endswith("num_batches_tracked"):
                value.fill_(3)
            else:
                value.copy_(torch.randn(value.shape, generator=gen, dtype=dtype))
    ours.load_state_dict(theirs.state_dict())
    return theirs.train(training), ours.train(training)


def _inputs(sample) -> list[torch.Tensor]:
    return [a.detach().clone().requires_grad_(a.requires_grad) for a in sample.forward_input.args]


def _state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _forward_backward(module: torch.nn.Module, sample, dtype: torch.dtype) -> list:
    """Output, input and parameter gradients, state dict values after one forward-backward."""
    inputs = [x.to(dtype) for x in _inputs(sample)]
    for x in inputs:
        x.retain_grad()
    out = module(*inputs, **sample.forward_input.kwargs)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out.backward(grad_out)
    grads = [x.grad for x in inputs] + [p.grad for p in module.parameters()]
    return [out.detach(), *grads, *_state(module).values()]


def _assert_as_accurate(ours, theirs, exact=None, what=""):
    """Equal to torch within assert_close's default tolerance; failing that (a float32 sum over
    many terms rounds differently in another order), no further from the float64 result than
    twice torch's own float32 result is."""
    try:
        torch.testing.assert_close(ours, theirs, msg=what)
    except AssertionError:
        if exact is None:
            raise
        ours_error = (ours.double() - exact).abs().max().item()
        torch_error = (theirs.double() - exact).abs().max().item()
        assert ours_error <= 2 * torch_error, (
            f"{what}: bnlib is {ours_error:.3g} from the float64 result, torch {torch_error:.3g}"
        )


@pytest.mark.parametrize("name,dtype,training,index", _cases())
def test_sample_matches_torch(name, dtype, training, index):
    sample = _samples(name, dtype, training)[index]
    theirs, ours = _pair(name, sample, dtype, training)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    exact_module = copy.deepcopy(theirs).double() if dtype == torch.float32 else None
    got_t = _forward_backward(theirs, sample, dtype)
    got_o = _forward_backward(ours, sample, dtype)
    exact = [None] * len(got_t)
    if exact_module is not None:
        exact = _forward_backward(exact_module, sample, torch.float64)
    assert len(got_o) == len(got_t)
    names = ["output", "input gradient", *(n for n, _ in theirs.named_parameters()),
             *theirs.state_dict()]
    for what, o, t, e in zip(names, got_o, got_t, exact):
        _assert_as_accurate(o, t, e, what)


@pytest.mark.parametrize("name,dtype,training,index", _cases(dtypes=(torch.float64,)))
def test_sample_passes_gradcheck_and_gradgradcheck(name, dtype, training, index):
    """torch's own test_grad/test_gradgrad: the gradients of the inputs and parameters, with
    torch's gradcheck settings (batched gradients on)."""
    sample = _samples(name, dtype, training)[index]
    _, ours = _pair(name, sample, dtype, training)
    inputs = [x for x in _inputs(sample) if x.requires_grad]
    params = tuple(ours.parameters())

    def forward(*flat):
        return ours(*flat[: len(inputs)], **sample.forward_input.kwargs)

    assert gradcheck(forward, (*inputs, *params), check_batched_grad=True)
    assert gradgradcheck(forward, (*inputs, *params), check_batched_grad=True)


def _error_cases() -> list:
    cases = []
    for name in NAMES:
        info = INFOS[name]
        if info.module_error_inputs_func is None:
            continue
        for dtype in DTYPES:
            errors = info.module_error_inputs_func(info, device="cpu", dtype=dtype,
                                                   requires_grad=False, training=True)
            cases += [pytest.param(name, error, id=f"{name}-{str(dtype)[6:]}-{i}")
                      for i, error in enumerate(errors)]
    return cases


@pytest.mark.parametrize("name,error", _error_cases())
def test_error_input_raises_what_torch_raises(name, error):
    sample = error.module_error_input
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    for cls in (INFOS[name].module_cls, getattr(bnn, name)):
        with pytest.raises(error.error_type, match=error.error_regex):
            module = cls(*args, **kwargs)
            assert error.error_on == ModuleErrorEnum.FORWARD_ERROR, "constructed without error"
            module(*sample.forward_input.args, **sample.forward_input.kwargs)


# --- behaviours of torch's test_nn.py outside module_db ---------------------------------------


def _run(module: torch.nn.Module, x: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.backward(torch.ones_like(out))
    return out, x.grad, [p.grad for p in module.parameters()], _state(module)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda m: m.BatchNorm1d(5), (0, 5)),
        (lambda m: m.BatchNorm2d(5), (0, 5, 2, 2)),
        (lambda m: m.BatchNorm3d(5, momentum=None), (0, 5, 2, 2, 2)),
        (lambda m: m.GroupNorm(3, 6), (0, 6, 2, 2)),
        # torch's InstanceNorm on an empty batch raises an IndexError when affine and writes NaN
        # into tracked running statistics: no behaviour to copy there, so only the plain layer
        (lambda m: m.InstanceNorm2d(5), (0, 5, 3, 3)),
    ],
    ids=["bn1d", "bn2d", "bn3d-cumulative", "groupnorm", "instancenorm2d"],
)
def test_empty_batch_in_training_as_torch(make, shape):
    """An empty batch gives an empty output, zero affine gradients, untouched running stats."""
    x = torch.randn(shape)
    results = []
    for family in (torch.nn, bnn):
        torch.manual_seed(0)
        module = make(family).train()
        with torch.no_grad():
            for value in module.state_dict().values():
                if value.is_floating_point():
                    value.uniform_(0.5, 1.5)
        results.append(_run(module, x))
    (out_t, dx_t, dp_t, state_t), (out_o, dx_o, dp_o, state_o) = results
    torch.testing.assert_close(out_o, out_t)
    torch.testing.assert_close(dx_o, dx_t)
    for g_o, g_t in zip(dp_o, dp_t, strict=True):
        torch.testing.assert_close(g_o, g_t)
    assert list(state_o) == list(state_t)
    for key in state_t:
        torch.testing.assert_close(state_o[key], state_t[key], msg=key, equal_nan=False)


def _channels_last_cases() -> list:
    """The float32 samples whose input has a channels-last layout (4D or 5D, not empty)."""
    cases = []
    for case in _cases(dtypes=(torch.float32,)):
        name, dtype, training, index = case.values
        x = _samples(name, dtype, training)[index].forward_input.args[0]
        if x.dim() in (4, 5) and x.numel() > 0:
            cases.append(case)
    return cases


@pytest.mark.parametrize("name,dtype,training,index", _channels_last_cases())
def test_channels_last_input_gives_torch_memory_formats(name, dtype, training, index):
    """The output and the input gradient of a channels-last input in torch's layouts."""
    sample = _samples(name, dtype, training)[index]
    x = sample.forward_input.args[0]
    layout = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    theirs, ours = _pair(name, sample, dtype, training)
    results = []
    for module in (theirs, ours):
        # the output and the input's gradient as autograd computes it (x.grad would be
        # restrided to x's layout by the accumulation, whatever the backward returned)
        x_in = x.detach().contiguous(memory_format=layout).requires_grad_()
        out = module(x_in)
        results.append((out, torch.autograd.grad(out, x_in, torch.ones_like(out))[0]))
    (out_t, dx_t), (out_o, dx_o) = results
    torch.testing.assert_close(out_o, out_t)
    for ours_, theirs_ in ((out_o, out_t), (dx_o, dx_t)):
        for fmt in (torch.contiguous_format, layout):
            assert ours_.is_contiguous(memory_format=fmt) == theirs_.is_contiguous(
                memory_format=fmt)


def test_layer_norm_rejects_an_empty_normalized_shape_as_torch():
    for family in (torch.nn, bnn):
        layer = family.LayerNorm(())
        with pytest.raises(RuntimeError, match="at least 1-dimensional"):
            layer(torch.randn(3))
