"""The checks of PyTorch's ``TestModule`` (its ``test/test_modules.py``) run on bnlib's modules.

PyTorch checks every module of ``module_db`` with one suite of generic tests: forward against
the sample's reference, factory kwargs, repr, save and load, non-contiguous inputs, gradcheck
and gradgradcheck, memory formats, train/eval flag, construction under a device context,
errors, ``to`` and ``to_empty`` with and without swapping tensors. The wheel ships
``module_db`` and the test machinery (``modules``, ``instantiate_device_type_tests``) but not
``test_modules.py`` itself, so the same checks are written out here, one method per PyTorch
test of the same name, and run over the ``module_db`` entries of the modules bnlib replaces with
their class swapped for bnlib's (``ModuleInfo.module_cls``). Everything else comes from the
entry as PyTorch wrote it: the samples, the error inputs, the flags
(``train_and_eval_differ``, ``module_memformat_affects_out``) and its decorators, which are
keyed on the class name ``TestModule`` and the test names (GroupNorm's float32 tolerance for
``test_memory_format`` on the CPU; its skips of ``test_memory_format``, "no channels_last
support", kept with their reason for LayerNorm, InstanceNorm2d and InstanceNorm3d, whose torch
layers fail that check as bnlib's do, and dropped for InstanceNorm1d, which passes it).

Instantiated for the CPU in float32 and float64, the dtypes bnlib claims (``test_grad`` and
``test_gradgrad`` in float64, ``test_to`` and ``test_to_empty`` in float32, as PyTorch does).
Not written out, because they cannot run here: ``test_multiple_device_transfer`` and
``test_cpu_gpu_parity`` (CUDA only: no GPU on the machines that run this suite), and
``test_check_inplace`` (it runs only for modules with an ``inplace`` argument, which no
normalisation layer has).
"""

from __future__ import annotations

import copy
import io
import itertools
import unittest

import torch
from torch._subclasses.meta_utils import assert_metadata_eq
from torch.testing._internal.common_device_type import instantiate_device_type_tests, onlyCPU
from torch.testing._internal.common_modules import (DecorateInfo, ModuleErrorEnum,
                                                     TrainEvalMode, module_db, modules)
from torch.testing._internal.common_utils import (TestCase, freeze_rng_state, gradcheck,
                                                  gradgradcheck, parametrize)
from torch.utils._pytree import tree_flatten, tree_map_only

import bnlib.nn as bnn

NAMES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d",
         "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "RMSNorm")
FLOATS = (torch.float32, torch.float64)


def _for_torch_entry(inputs_func, info):
    """``inputs_func`` called with torch's entry: some pick their inputs by ``module_cls``."""
    if inputs_func is None:
        return None
    return lambda _entry, **kwargs: inputs_func(info, **kwargs)


#: The modules whose ``test_memory_format`` module_db skips ("No channels_last support"), and
#: rightly: torch's own layer fails the check (its output for a channels-last input is
#: contiguous), and bnlib's, a drop-in, gives the same layout. module_db skips InstanceNorm1d
#: too, but its inputs are 3D, with no channels-last layout to lose: it runs here.
NO_CHANNELS_LAST = ("InstanceNorm2d", "InstanceNorm3d", "LayerNorm")


def _is_memory_format_skip(decorator) -> bool:
    return (isinstance(decorator, DecorateInfo) and decorator.test_name == "test_memory_format"
            and decorator.device_type is None
            and all(d.__qualname__ == "skip.<locals>.decorator" for d in decorator.decorators))


def _decorators(info) -> tuple:
    """module_db's decorators for ``info``, its memory-format skip restated with its reason
    (module_db's reads "Skipped!") or, for a module that passes, left out."""
    name = info.module_cls.__name__
    reason = (f"module_db skips test_memory_format for {name}: torch's own layer returns a "
              "contiguous output for a channels-last input, and bnlib's does as torch's")
    kept = [d for d in info.decorators if not _is_memory_format_skip(d)]
    if name in NO_CHANNELS_LAST:
        kept.append(DecorateInfo(unittest.skip(reason), "TestModule", "test_memory_format"))
    return tuple(kept)


def _bnlib_entry(info):
    """A copy of a ``module_db`` entry whose module class is bnlib's namesake (the samples and
    error inputs still those torch's entry gives)."""
    entry = copy.copy(info)
    entry.module_cls = getattr(bnn, info.module_cls.__name__)
    entry.module_inputs_func = _for_torch_entry(info.module_inputs_func, info)
    entry.module_error_inputs_func = _for_torch_entry(info.module_error_inputs_func, info)
    entry.decorators = _decorators(info)
    return entry


BNLIB_DB = [_bnlib_entry(info) for info in module_db if info.module_cls.__name__ in NAMES]
assert len(BNLIB_DB) == len(NAMES), "every module bnlib replaces has a module_db entry"


def _tensors(obj) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _grads(obj) -> list:
    return [t.grad for t in _tensors(obj) if t.requires_grad]


def _clear_grads(*objs) -> None:
    for obj in objs:
        for t in _tensors(obj):
            t.grad = None


def _detached_copy(obj, make=lambda t: t.clone()):
    """``obj`` with every tensor replaced by ``make(tensor)``, detached, same requires_grad."""
    return tree_map_only(torch.Tensor,
                         lambda t: make(t.detach()).detach().requires_grad_(t.requires_grad), obj)


class TestModule(TestCase):
    """One method per PyTorch ``TestModule`` test that can run on the CPU (the class name is the
    one ``module_db``'s decorators are keyed on)."""

    precision = 1e-5
    rel_tol = 1e-5

    def _samples(self, info, device, dtype, training, requires_grad=False):
        samples = info.module_inputs_func(info, device=device, dtype=dtype,
                                          requires_grad=requires_grad, training=training)
        return [s for s in samples if s.forward_input is not None]

    def _module(self, info, sample, device, dtype, training):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        return info.module_cls(*args, **kwargs).to(device).to(dtype).train(training)

    def _assert_placed(self, module, device, dtype):
        device = torch.device(device)
        for name, t in itertools.chain(module.named_parameters(), module.named_buffers()):
            self.assertEqual(t.device, device, f"{name} is on {t.device}, not {device}")
            if t.dtype.is_floating_point:
                self.assertEqual(t.dtype, dtype, f"{name} is {t.dtype}, not {dtype}")

    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_forward(self, device, dtype, module_info, training):
        """The sample's reference output, if it has one; ``.float()``/``.double()`` then keep
        every parameter and buffer in that dtype through a forward."""
        for sample in self._samples(module_info, device, dtype, training):
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            with freeze_rng_state():
                m = self._module(module_info, sample, device, dtype, training)
                out = m(*args, **kwargs)
                if sample.reference_fn is not None:
                    self.assertEqual(out, sample.reference_fn(m, *args, **kwargs))
                m.float() if dtype == torch.float32 else m.double()
                m(*args, **kwargs)
                self._assert_placed(m, device, dtype)

    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_factory_kwargs(self, device, dtype, module_info, training):
        """``device=`` and ``dtype=`` at construction reach every parameter and buffer."""
        for sample in module_info.module_inputs_func(module_info, device=device, dtype=dtype,
                                                     requires_grad=False, training=training):
            args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
            plain = module_info.module_cls(*args, **kwargs)
            if not list(plain.parameters()) and not list(plain.buffers()):
                continue
            m = module_info.module_cls(*args, **kwargs, device=device, dtype=dtype)
            self._assert_placed(m.train(training), device, dtype)

    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_repr(self, device, dtype, module_info, training):
        for sample in module_info.module_inputs_func(module_info, device=device, dtype=dtype,
                                                     requires_grad=False, training=training):
            m = self._module(module_info, sample, device, dtype, training)
            self.assertIsInstance(repr(m), str)
            self.assertIsInstance(str(m), str)

    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_save_load(self, device, dtype, module_info, training):
        """A saved and loaded module gives the same output; its state dict loads back equal,
        also with ``weights_only=True``. (The whole module is loaded with
        ``weights_only=False``: ``weights_only`` admits torch's own classes only.)"""
        for sample in self._samples(module_info, device, dtype, training):
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            with freeze_rng_state():
                m = self._module(module_info, sample, device, dtype, training)
                state = m.state_dict()
                out = m(*args, **kwargs)
                buffer = io.BytesIO()
                torch.save(m, buffer)
                buffer.seek(0)
                copy_ = torch.load(buffer, weights_only=False)
                self.assertEqual(copy_(*args, **kwargs), out)
            for weights_only in (False, True):
                buffer = io.BytesIO()
                torch.save(state, buffer)
                buffer.seek(0)
                self.assertEqual(torch.load(buffer, weights_only=weights_only), state)

    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_non_contiguous_tensors(self, device, dtype, module_info, training):
        """Non-contiguous inputs and output gradients give the same output and gradients."""

        def strided(t):  # every other element of a doubled last axis: same values, stride 2
            return t if t.dim() == 0 else t.repeat_interleave(2, dim=-1)[..., ::2]

        for sample in self._samples(module_info, device, dtype, training, requires_grad=True):
            inputs = (sample.forward_input.args, sample.forward_input.kwargs)
            if not any(t.dim() > 0 for t in _tensors(inputs)):
                continue
            m = self._module(module_info, sample, device, dtype, training)
            with freeze_rng_state():
                reference = m(*inputs[0], **inputs[1])
            grad_out = reference.detach().clone().normal_()
            reference.backward(grad_out)
            ref_input_grads = [g.clone() for g in _grads(inputs)]
            ref_param_grads = [p.grad.clone() for p in m.parameters()]
            variants = [inputs, _detached_copy(inputs, strided)]
            for (args, kwargs), g in itertools.product(variants, [grad_out, strided(grad_out)]):
                _clear_grads((args, kwargs), list(m.parameters()))
                with freeze_rng_state():
                    out = m(*args, **kwargs)
                out.backward(g.clone())
                self.assertEqual(out, reference)
                self.assertEqual(_grads((args, kwargs)), ref_input_grads, atol=1e-4, rtol=0)
                self.assertEqual([p.grad for p in m.parameters()], ref_param_grads)

    def _check_gradients(self, device, dtype, module_info, training, check):
        """``check`` (gradcheck or gradgradcheck) of the output against the inputs and
        parameters together, then against each parameter alone."""
        for sample in self._samples(module_info, device, dtype, training, requires_grad=True):
            m = self._module(module_info, sample, device, dtype, training)
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            params = tuple(m.parameters())

            def forward(*flat, n=len(args)):
                with freeze_rng_state():
                    return tree_flatten(m(*flat[:n], **kwargs))[0]

            options = {"fast_mode": module_info.gradcheck_fast_mode,
                       "nondet_tol": 0.0}
            self.assertTrue(check(forward, (*args, *params), **options))
            wanted = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(False)
            for p, want in zip(params, wanted):
                p.requires_grad_(want)
                self.assertTrue(check(forward, (*args, *params), **options))
                p.requires_grad_(False)

    @modules(BNLIB_DB, allowed_dtypes=[torch.float64])
    def test_grad(self, device, dtype, module_info, training):
        self._check_gradients(device, dtype, module_info, training, gradcheck)

    @modules([info for info in BNLIB_DB if info.supports_gradgrad],
             allowed_dtypes=[torch.float64])
    def test_gradgrad(self, device, dtype, module_info, training):
        self._check_gradients(device, dtype, module_info, training, gradgradcheck)

    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_memory_format(self, device, dtype, module_info, training):
        """Every combination of input format (preserved, contiguous, channels-last for 4D and
        5D inputs) and module format gives the contiguous result, in the input's format (or
        the module's, where ``module_memformat_affects_out``), and so do the input gradients."""
        affects = module_info.module_memformat_affects_out
        for sample in self._samples(module_info, device, dtype, training, requires_grad=True):
            dims = {t.dim() for t in _tensors(sample.forward_input.args)}
            last = {4: torch.channels_last, 5: torch.channels_last_3d}
            lasts = [last[d] for d in (4, 5) if d in dims]
            input_formats = [torch.contiguous_format, *lasts]
            module_formats = [torch.preserve_format, torch.contiguous_format, *lasts]
            with freeze_rng_state():
                m = self._module(module_info, sample, device, dtype, training)
                args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
                reference = m(*args, **kwargs)
                if training:
                    wrt = [t for t in _tensors((args, kwargs, list(m.parameters())))
                           if t.requires_grad]
                    grad_out = torch.rand_like(reference)
                    ref_grads = torch.autograd.grad(reference, wrt, grad_out)
                for input_format, module_format in itertools.product(input_formats,
                                                                     module_formats):

                    def to_format(t, fmt=input_format):
                        wrong = {torch.channels_last: 4, torch.channels_last_3d: 5}
                        if fmt in wrong and t.dim() != wrong[fmt]:
                            return t.clone()
                        return t.clone().to(memory_format=fmt)

                    args, kwargs = _detached_copy((args, kwargs), to_format)
                    m.to(memory_format=module_format)
                    out = m(*args, **kwargs)
                    self.assertEqual(out, reference)
                    self._assert_format(out, input_format, module_format, affects)
                    if training:
                        wrt = [t for t in _tensors((args, kwargs, list(m.parameters())))
                               if t.requires_grad]
                        g = torch.empty_like(out).copy_(grad_out)
                        grads = torch.autograd.grad(out, wrt, g)
                        self.assertEqual(grads, ref_grads)
                        for grad in grads:
                            self._assert_format(grad, input_format, module_format, affects)

    def _assert_format(self, t, input_format, module_format, affects):
        last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())
        if last is not None and (input_format == last or (affects and module_format == last)):
            self.assertTrue(t.is_contiguous(memory_format=last), f"{tuple(t.stride())}")
        else:
            self.assertTrue(t.is_contiguous(), f"{tuple(t.shape)} strides {tuple(t.stride())}")

    @modules(BNLIB_DB, allowed_dtypes=FLOATS, train_eval_mode=TrainEvalMode.train_only)
    def test_if_train_and_eval_modes_differ(self, device, dtype, module_info, training):
        """A forward that reads ``self.training`` belongs to an entry flagged
        ``train_and_eval_differ``."""
        for sample in self._samples(module_info, device, dtype, training):
            m = self._module(module_info, sample, device, dtype, training)
            delattr(m, "training")
            try:
                m(*sample.forward_input.args, **sample.forward_input.kwargs)
            except AttributeError as error:
                if "'training'" not in str(error):
                    raise
                self.assertTrue(module_info.train_and_eval_differ,
                                f"{module_info.name}'s forward reads self.training")

    @onlyCPU
    @modules(BNLIB_DB, allowed_dtypes=FLOATS)
    def test_device_ctx_init(self, device, dtype, module_info, training):
        """Built under ``torch.device("meta")``, every parameter and buffer is a meta tensor
        with the metadata (shape, strides, dtype, requires_grad) of the CPU module's."""
        samples = module_info.module_inputs_func(module_info, device=device, dtype=dtype,
                                                 requires_grad=False, training=training)
        with torch.device("meta"):
            metas = module_info.module_inputs_func(module_info, device=None, dtype=dtype,
                                                   requires_grad=False, training=training)
        for sample, meta in zip(samples, metas, strict=True):
            cpu = module_info.module_cls(*sample.constructor_input.args,
                                         **sample.constructor_input.kwargs)
            with torch.device("meta"):
                m = module_info.module_cls(*meta.constructor_input.args,
                                           **meta.constructor_input.kwargs)
            pairs = itertools.chain(zip(m.parameters(), cpu.parameters(), strict=True),
                                    zip(m.buffers(), cpu.buffers(), strict=True))
            for on_meta, on_cpu in pairs:
                self.assertTrue(on_meta.is_meta)
                assert_metadata_eq(self.assertEqual, on_meta, on_cpu)

    @modules([info for info in BNLIB_DB if info.module_error_inputs_func is not None],
             allowed_dtypes=FLOATS)
    def test_errors(self, device, dtype, module_info, training):
        """The inputs PyTorch rejects raise its exception type with a matching message."""
        for error in module_info.module_error_inputs_func(module_info, device=device,
                                                          dtype=dtype, requires_grad=False,
                                                          training=training):
            sample = error.module_error_input
            args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
            if error.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
                with self.assertRaisesRegex(error.error_type, error.error_regex):
                    module_info.module_cls(*args, **kwargs)
            else:
                m = module_info.module_cls(*args, **kwargs)
                with self.assertRaisesRegex(error.error_type, error.error_regex):
                    m(*sample.forward_input.args, **sample.forward_input.kwargs)

    def _swapping(self, swap: bool):
        """Restores torch's swap-on-conversion switch after a test that sets it."""
        before = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(swap)
        self.addCleanup(torch.__future__.set_swap_module_params_on_conversion, before)

    @modules(BNLIB_DB, allowed_dtypes=[torch.float32])
    @parametrize("swap", [True, False])
    @parametrize("set_grad", [True, False])
    def test_to(self, device, dtype, module_info, training, swap, set_grad):
        """``module.to(device, dtype)`` over the entry's dtypes keeps parameters as Parameters
        of that device and dtype (and their gradients with them); with swapping on, the same
        Python objects with new tensors, without it the same tensors, their data replaced."""
        self._swapping(swap)
        for sample in module_info.module_inputs_func(module_info, device=device, dtype=dtype,
                                                     requires_grad=False, training=training):
            args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
            m = module_info.module_cls(*args, **kwargs)
            for name, p in list(m.named_parameters()):  # placed by hand: .to is under test
                setattr(m, name, torch.nn.Parameter(p.detach().clone().to(device, dtype)))
                if set_grad:
                    getattr(m, name).grad = torch.randn_like(getattr(m, name))
            for name, b in list(m.named_buffers()):
                setattr(m, name, b.detach().clone().to(device, dtype))
            params = list(m.parameters())
            if swap and not set_grad and params and sample.forward_input is not None:
                m(*sample.forward_input.args, **sample.forward_input.kwargs).sum().backward()
                m.to(dtype=torch.half)
                m.to(dtype=torch.float32)
            previous = (torch.device(device), dtype)
            for device_, dtype_ in itertools.product(["cpu"], module_info.dtypes):
                unchanged = previous == (torch.device(device_), dtype_)
                previous = (torch.device(device_), dtype_)
                ids = [id(p) for p in m.parameters()]
                datas = [p._cdata for p in m.parameters()]
                grad_ids = [id(p.grad) for p in m.parameters()] if set_grad else []
                grad_datas = [p.grad._cdata for p in m.parameters()] if set_grad else []
                m.to(device=device_, dtype=dtype_)
                params = list(m.parameters())
                self.assertTrue(all(isinstance(p, torch.nn.Parameter) for p in params))
                self.assertTrue(all(p.device.type == device_ and p.dtype == dtype_
                                    for p in params))
                self.assertEqual([id(p) for p in params], ids)
                if set_grad:
                    self.assertTrue(all(p.grad.device.type == device_ and p.grad.dtype == dtype_
                                        for p in params))
                new_datas = [p._cdata for p in params]
                new_grad_datas = [p.grad._cdata for p in params] if set_grad else []
                if swap:
                    self.assertTrue(all(a != b for a, b in zip(datas, new_datas)))
                    self.assertTrue(all((a == b) == unchanged
                                        for a, b in zip(grad_datas, new_grad_datas)))
                else:
                    self.assertEqual(new_datas, datas)
                    self.assertEqual(new_grad_datas, grad_datas)
                    if set_grad:
                        self.assertEqual([id(p.grad) for p in params], grad_ids)

    @modules(BNLIB_DB, allowed_dtypes=[torch.float32])
    @parametrize("swap", [True, False])
    def test_to_empty(self, device, dtype, module_info, training, swap):
        """A module built on the meta device and moved by ``to_empty`` has Parameters of the
        device and dtype: the same objects when swapping, new ones otherwise."""
        self._swapping(swap)
        with torch.device("meta"):
            samples = module_info.module_inputs_func(module_info, device=None, dtype=dtype,
                                                     requires_grad=False, training=training)
        target = torch.device(device)
        for sample in samples:
            with torch.device("meta"):
                m = module_info.module_cls(*sample.constructor_input.args,
                                           **sample.constructor_input.kwargs)
            ids = [id(p) for p in m.parameters()]
            datas = [p._cdata for p in m.parameters()]
            m.to_empty(device=target)
            params = list(m.parameters())
            self.assertTrue(all(isinstance(p, torch.nn.Parameter) for p in params))
            self.assertTrue(all(p.device == target and p.dtype == dtype for p in params))
            self.assertTrue(all(a != b for a, b in zip(datas, [p._cdata for p in params])))
            same = [a == b for a, b in zip(ids, [id(p) for p in params])]
            self.assertTrue(all(same) if swap else not any(same))


instantiate_device_type_tests(TestModule, globals(), only_for="cpu")


class _ContiguousGroupNorm(bnn.GroupNorm):
    """bnlib's GroupNorm with a contiguous output whatever the input's layout: the fault
    ``test_memory_format`` is there to catch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).contiguous()


def test_the_memory_format_check_catches_a_layout_lost(monkeypatch):
    entry = next(e for e in BNLIB_DB if e.module_cls is bnn.GroupNorm)
    monkeypatch.setattr(entry, "module_cls", _ContiguousGroupNorm)
    result = unittest.TestResult()
    globals()["TestModuleCPU"]("test_memory_format_GroupNorm_cpu_float64").run(result)
    assert len(result.failures) == 1 and "False is not true" in result.failures[0][1]
