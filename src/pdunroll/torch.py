"""pdunroll inside torch: x̂ = A_L(K, x̃), L unrolled Chambolle-Pock steps, as a differentiable
layer whose backward is pdunroll's hand-written reverse recursion (docs, Mathematics: "Full
reverse mode"; Brauer & Lorenz, EUSIPCO 2023), not torch.autograd of the loop.

:func:`unrolled` is the functional form: the model's parameters (K or the filter bank, and the
parameters of F and G such as the costs c of a :class:`~pdunroll.LinearTerm`) are torch tensors,
and gradients reach those that require them. :class:`UnrolledCP` is an ``nn.Module`` holding the
operator's parameters as ``nn.Parameter`` and taking x̃ and, optionally, F's and G's parameters.

The backward is first order (double backward raises); a second ``backward`` through the same
graph (``retain_graph=True``, e.g. ``torch.autograd.gradcheck``) reruns the forward pass.
Under a user's ``torch.compile`` the layer is one graph break. With ``compile=True`` the layer
compiles pdunroll's own forward loop and its hand-written reverse recursion with
``torch.compile`` (inductor; no autograd is involved), once per shape, dtype, L, method and
model structure (docs, "pdunroll inside torch and JAX": "The compiled path"). Importing this
module imports torch; ``import pdunroll`` does not.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import fields, replace

import torch

from . import tree
from ._array import check_count, trusted_values
from .model import AnalysisModel, StepRule, StepSizes, check_model, resolve_steps, step_rule
from .unroll.forward import ForwardState
from .unroll.gradient import GradientResult, forward_pass, gradient_unchecked, reverse_pass
from .unroll.methods import GradientMethod
from .unroll.plan import Plan, make_plan

__all__ = ["UnrolledCP", "check_compile", "compiled_gradient", "unrolled"]

# ------------------------------------------------------------------ the compiled path

#: the keywords of ``torch.compile`` that ``compile={...}`` may set (``dynamic`` is always False:
#: one compiled program per shape, as the products and fused loops are specialised to it)
COMPILE_KEYWORDS = ("backend", "mode", "options", "fullgraph")


def check_compile(compile) -> bool | dict:
    """``compile`` as given to the layers and :func:`pdunroll.train`: ``False`` (eager),
    ``True`` (inductor; CUDA graphs for a whole training step on a GPU) or a mapping of
    ``torch.compile`` keywords among :data:`COMPILE_KEYWORDS`."""
    if isinstance(compile, bool):
        return compile
    if isinstance(compile, Mapping):
        unknown = sorted(set(compile) - set(COMPILE_KEYWORDS))
        if unknown:
            raise ValueError(f"compile: unknown torch.compile keyword(s) {unknown}; expected "
                             f"some of {list(COMPILE_KEYWORDS)} (dynamic is always False)")
        return dict(compile)
    raise TypeError("compile must be True, False or a dict of torch.compile keywords "
                    f"{list(COMPILE_KEYWORDS)}, got {type(compile).__name__}")


def _options(compile: bool | dict, device: torch.device, *, one_graph: bool) -> dict | None:
    """The ``torch.compile`` keywords of ``compile`` on ``device``, None for eager. ``True``:
    inductor (C++/OpenMP code on a CPU, Triton on a GPU); on CUDA a call that is one whole
    graph (a training step: forward, loss and reverse pass) also runs as a CUDA graph
    (``mode="reduce-overhead"``). The layer's forward and backward are two calls whose tape
    must outlive the next graph launch, which CUDA graphs would overwrite: no CUDA graphs."""
    if compile is False:
        return None
    if compile is True:
        mode = "reduce-overhead" if one_graph and device.type == "cuda" else None
        return {"backend": "inductor", "mode": mode}
    return dict(compile)


# The layer's forward and backward are two programs: the forward pass's state (its tape)
# crosses between them as a flat list of tensors beside a skeleton of constants, and the reverse
# program is a pure function of it (no closure). Bool masks cross as 0/1 of x̂'s dtype where
# compiled: inductor's CPU code writes and reads bool arrays several times slower than floats.
_HANDED = tuple(f.name for f in fields(ForwardState) if f.name != "scaled")  # scaled: remade
_TENSOR, _MASK, _CONSTANT = "tensor", "mask", "constant"
_NODES = {"tuple": tuple, "list": list, "deque": deque}


def _pack(node, tensors: list, mask_dtype):
    """``node`` (tensors in tuples, lists and deques; other leaves constants) as a skeleton of
    constants, its tensors appended to ``tensors`` (bool ones as ``mask_dtype`` unless None)."""
    if isinstance(node, torch.Tensor):
        mask = node.dtype == torch.bool and mask_dtype is not None
        tensors.append(node.to(mask_dtype) if mask else node)
        return (_MASK if mask else _TENSOR, len(tensors) - 1)
    if isinstance(node, (tuple, list, deque)):  # noqa: UP038 - Dynamo traces this form
        return (type(node).__name__, tuple(_pack(part, tensors, mask_dtype) for part in node))
    return (_CONSTANT, node)


def _unpack(skeleton, tensors):
    """The tree that :func:`_pack` made ``skeleton`` and ``tensors`` of."""
    kind, content = skeleton
    if kind == _TENSOR:
        return tensors[content]
    if kind == _MASK:
        return tensors[content] != 0
    if kind == _CONSTANT:
        return content
    return _NODES[kind](_unpack(part, tensors) for part in content)


# own code objects, so that their compiled programs (and Dynamo's recompile limit,
# torch._dynamo.config.recompile_limit per function) are the layers' alone
def _forward_kernel(model, x_tilde, plan, mask_dtype):
    """x̂ and the forward pass's state as (skeleton, tensors)."""
    x_hat, state = forward_pass(model, x_tilde, plan)
    tensors = []
    skeleton = _pack(tuple(getattr(state, name) for name in _HANDED), tensors, mask_dtype)
    return x_hat, skeleton, tensors


def _reverse_kernel(model, x_tilde, plan, x_hat, skeleton, tensors, v):
    """The :class:`~pdunroll.unroll.gradient.Cotangents` of v from :func:`_forward_kernel`'s
    state."""
    state = ForwardState(**dict(zip(_HANDED, _unpack(skeleton, tensors), strict=True)))
    return reverse_pass(model, x_tilde, plan, state, x_hat, v)


def _gradient_kernel(model, x_tilde, loss, plan):
    return gradient_unchecked(model, x_tilde, loss, plan)


_KERNELS = {"forward": _forward_kernel, "reverse": _reverse_kernel, "gradient": _gradient_kernel}
_COMPILED: dict = {}  # (kernel, options) -> the torch.compile'd kernel
_UNAVAILABLE: list[str] = []  # why compiling failed in this process (then: eager, warned once)


def _compiled(kind: str, options: dict) -> Callable:
    key = (kind, *sorted((k, repr(v)) for k, v in options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_KERNELS[kind], dynamic=False, **options)
    return _COMPILED[key]


def _run(kind: str, options: dict | None, *args):
    """Kernel ``kind`` compiled with ``options`` (eager for None). Where compiling fails (e.g.
    inductor finds no C++ compiler, or torch.compile does not support this Python) the failure
    is reported once, with its cause, and this process runs every kernel eagerly from then on."""
    if options is None or _UNAVAILABLE:
        return _KERNELS[kind](*args)
    try:
        compiled = _compiled(kind, options)
    except RuntimeError as err:  # torch.compile itself refuses
        return _eager_after(err, kind, args)
    try:
        with warnings.catch_warnings():  # array-api-compat's cached type tests, traced through
            warnings.filterwarnings("ignore", "Dynamo detected a call to a `functools.lru_cache`",
                                    UserWarning)
            return compiled(*args)
    except torch._dynamo.exc.BackendCompilerFailed as err:
        return _eager_after(err, kind, args)


def _eager_after(err: Exception, kind: str, args):
    """Report why compiling failed (once per process) and run kernel ``kind`` eagerly."""
    inner = getattr(err, "inner_exception", None) or err
    cause = f"{type(inner).__name__}: {str(inner).strip().splitlines()[0]}"
    _UNAVAILABLE.append(cause)
    warnings.warn(
        f"pdunroll.torch: torch.compile could not compile the unrolled solver ({cause}); it "
        "runs eagerly for the rest of this process. Inductor's CPU backend needs a working C++ "
        "compiler (torch._inductor.config.cpp.cxx, the CXX variable); compile=False (command "
        "line: no --compile) runs eagerly without this warning", RuntimeWarning, stacklevel=3)
    return _KERNELS[kind](*args)


def _tensor_steps(plan: Plan, dtype, device) -> Plan:
    """``plan`` with σ, τ, ‖K‖ as 0-d tensors of the operator's dtype and device: a compiled
    program takes them as inputs (numbers would be its constants, recompiled whenever ‖K‖
    moves)."""
    def tensor(v):
        return v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype, device=device)

    steps = plan.steps
    return plan.with_steps(StepSizes._on_device(tensor(steps.sigma), tensor(steps.tau),
                                                steps.theta, tensor(steps.op_norm)))


def compiled_gradient(compile: bool | dict, device) -> Callable[..., GradientResult]:
    """:func:`~pdunroll.unroll.gradient.gradient_unchecked` (same arguments) as one compiled
    program per shape, dtype, L and method: the forward loop, the loss and the hand-written
    reverse pass of a training step (:func:`pdunroll.train` with ``compile=``)."""
    options = _options(check_compile(compile), torch.device(device), one_graph=True)

    def gradient(model, x_tilde, loss, plan):
        if options is not None:
            plan = _tensor_steps(plan, x_tilde.dtype, x_tilde.device)
        return _run("gradient", options, model, x_tilde, loss, plan)

    return gradient


class _Spec:
    """The non-tensor inputs of one call, and the state its forward pass leaves for the
    reverse pass: (model, x̃, plan, x̂, skeleton, tensors)."""

    def __init__(self, model, plan: Plan, counts, compile):
        self.model, self.plan, self.counts = model, plan, counts
        self.options = _options(compile, model.operator.device, one_graph=False)
        self.mask_dtype = None
        if self.options is not None:
            self.plan = _tensor_steps(plan, model.operator.dtype, model.operator.device)
            self.mask_dtype = model.operator.dtype
        self.state = None

    def run(self, x_tilde, leaves):
        """x̂ of the forward pass, whose state is kept for :meth:`pull`."""
        own = [leaf for part in self.model.leaves() for leaf in part]
        same = len(own) == len(leaves) and all(a is b for a, b in zip(own, leaves, strict=True))
        model = self.model if same else self.model.with_leaves(leaves, self.counts)
        # ∇x̃ only where x̃ requires grad (the backward's ctx.needs_input_grad[1]): else the
        # reverse pass skips its sum Σ δ_D
        plan = self.plan
        if plan.x_wanted != x_tilde.requires_grad:
            plan = replace(plan, x_wanted=x_tilde.requires_grad)
        x_hat, skeleton, tensors = _run("forward", self.options, model, x_tilde, plan,
                                        self.mask_dtype)
        self.state = (model, x_tilde, plan, x_hat, skeleton, tensors)
        return x_hat

    def pull(self, v):
        """The cotangents of v from the kept state (freed here: a second backward through a
        retained graph reruns the forward pass first)."""
        model, x_tilde, plan, x_hat, skeleton, tensors = self.state
        self.state = None
        return _run("reverse", self.options, model, x_tilde, plan, x_hat, skeleton, tensors, v)


class _Unrolled(torch.autograd.Function):
    """forward(spec, x̃, *leaves) = x̂; backward = the pullback of :func:`pdunroll.vjp`."""

    @staticmethod
    def forward(spec, x_tilde, *leaves):
        return spec.run(x_tilde, leaves)

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, x_tilde, *leaves = inputs
        ctx.spec = spec
        ctx.save_for_backward(x_tilde, *leaves)

    @staticmethod
    def backward(ctx, v):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "pdunroll.torch: the unrolled layer's backward is pdunroll's hand-written "
                "first-order recursion; double backward (create_graph=True, gradgradcheck, "
                "torch.func.hessian) is not supported")
        spec = ctx.spec
        if spec.state is None:  # a second backward through a retained graph: rerun the forward
            x_tilde, *leaves = ctx.saved_tensors
            spec.run(x_tilde, leaves)
        c = spec.pull(v.contiguous())
        grads = [c.x_tilde, *tree.flatten(c.operator), *tree.flatten(c.f), *tree.flatten(c.g)]
        needed = ctx.needs_input_grad[1:]
        return (None, *(gr if need else None for gr, need in zip(grads, needed, strict=True)))


@torch.compiler.disable  # validation, step sizes and the layer: one graph break
def unrolled(
    model: AnalysisModel,
    x_tilde: torch.Tensor,
    *,
    iterations: int,
    method: GradientMethod | str = "full",
    weights=None,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
    compile: bool | dict = False,
) -> torch.Tensor:
    """x̂ = A_L(K, x̃) for a model whose parameters are torch tensors, differentiable w.r.t.
    x̃ and every parameter (of the operator, F and G) that requires grad; the backward is the
    pullback of :func:`pdunroll.vjp` with ``method``.

    Arguments as in :func:`pdunroll.vjp`. The step sizes (``steps``, a
    :class:`~pdunroll.StepRule` or fixed :class:`~pdunroll.StepSizes`; ``omega=w`` for
    ``StepRule(omega=w)``; default ``StepRule()``) are constants for differentiation; a rule
    computes ‖K‖ by a power iteration (run without grad). ``compile=True`` runs the forward
    loop and the reverse recursion as ``torch.compile`` programs (inductor), compiled on the
    first call of each shape, dtype, L and method and reused after; a dict gives
    ``torch.compile``'s ``backend``, ``mode``, ``options``, ``fullgraph`` instead (docs,
    "pdunroll inside torch and JAX": "The compiled path").
    """
    compile = check_compile(compile)
    check_model(model)
    plan = make_plan(method, iterations, weights)
    with torch.no_grad():
        model.check_signals(x_tilde=x_tilde)
        plan = plan.with_steps(resolve_steps(model.operator, omega, steps))
    ops, fs, gs = model.leaves()
    spec = _Spec(model, plan, (len(ops), len(fs)), compile)
    return _Unrolled.apply(spec, x_tilde, *ops, *fs, *gs)


class UnrolledCP(torch.nn.Module):
    """The unrolled solver as a module: the operator's parameters (a matrix K, a filter bank,
    the parts of a :class:`~pdunroll.Composition` or :class:`~pdunroll.Stack`) are
    ``nn.Parameter`` (``self.operator_params``, trained by any ``torch.optim`` optimizer);
    ``forward(x_tilde, f=None, g=None)`` returns x̂, with ``f`` and ``g`` replacing the
    parameters of F and G for this call (e.g. ``g=costs`` from a network for the segmentation
    model, whose G is ``LinearTerm(c, ...)``).

    ``model`` gives the initial operator (its parameters are copied), F and G; ``iterations``,
    ``method``, ``weights``, ``omega``, ``steps`` as in :func:`unrolled`. With a
    :class:`~pdunroll.StepRule` (the default) the step sizes follow ‖K‖ at each call (the
    operator changes while it trains): the first call estimates ‖K‖ to convergence, every
    later one runs ``norm_iterations`` power iterations warm-started from the last singular
    vector (the buffer ``norm_vector``), on the device. A call checks the shapes, dtypes and
    devices of its inputs but reads no values: after the first call, forward and backward make
    no host round trip (a non-finite input gives a non-finite output, not an error).
    ``compile`` as in :func:`unrolled`."""

    def __init__(self, model: AnalysisModel, *, iterations: int,
                 method: GradientMethod | str = "full", weights=None,
                 omega: float | None = None, steps: StepRule | StepSizes | None = None,
                 norm_iterations: int = 10, compile: bool | dict = False):
        super().__init__()
        self.compile = check_compile(compile)
        check_model(model)
        ops = tree.flatten(model.operator.params)
        for p in ops:
            if not isinstance(p, torch.Tensor):
                raise TypeError("model.operator's parameters must be torch tensors for "
                                f"UnrolledCP, got {type(p).__name__}")
        self.operator_params = torch.nn.ParameterList(
            [torch.nn.Parameter(p.detach().clone()) for p in ops])
        self._start = model
        self._plan = make_plan(method, iterations, weights)
        self.weights, self.steps = weights, step_rule(omega, steps)
        if isinstance(self.steps, StepSizes):
            resolve_steps(model.operator, None, self.steps)  # ‖K‖ checked once, here
        self.norm_iterations = check_count("norm_iterations", norm_iterations)
        self.register_buffer("norm_vector", None, persistent=False)

    @property
    def method(self) -> GradientMethod:
        """The gradient method."""
        return self._plan.method

    @property
    def iterations(self) -> int:
        """L, the number of unrolled steps."""
        return self._plan.iterations

    @property
    def model(self) -> AnalysisModel:
        """The model with the module's current operator (after training: the trained one) as
        detached copies of its parameters, and the given F and G: what to save, e.g.
        ``pu.LearnedModel(layer.model, layer.iterations, omega=...).save(path)``."""
        op = self._start.operator
        params = [p.detach().clone() for p in self.operator_params]
        op = op.with_params(tree.unflatten(op.params, params)) if params else op
        return AnalysisModel(op, self._start.f, self._start.g)

    @property
    def operator(self):
        """The current operator (with the module's parameters, differentiable)."""
        op = self._start.operator
        params = list(self.operator_params)
        return op.with_params(tree.unflatten(op.params, params)) if params else op

    def _sizes(self, operator) -> StepSizes:
        """The step sizes of this call: fixed ones, or the rule's for ‖K‖ warm-started from the
        last call's singular vector (no gradient, no host round trip after the first call)."""
        if isinstance(self.steps, StepSizes):
            return self.steps
        with torch.no_grad():
            if self.norm_vector is None:
                est = self.steps.initial_norm(operator)
                norm, vector = est.value, est.vector
            else:
                norm, vector = self.steps.refresh(operator, self.norm_vector,
                                                  self.norm_iterations)
        self.norm_vector = vector.detach()
        return self.steps.for_norm(norm)

    @torch.compiler.disable  # building the model checks its arrays: part of the graph break
    def forward(self, x_tilde: torch.Tensor, f=None, g=None) -> torch.Tensor:
        model = self._start
        with trusted_values():  # shapes, dtypes, devices checked; values not read
            fn, gn = model.f, model.g
            if f is not None:
                fn = fn.with_params(f)
            if g is not None:
                gn = gn.with_params(g)
            model = AnalysisModel(self.operator, fn, gn)
            model.check_signals(x_tilde=x_tilde)
        ops, fs, gs = model.leaves()
        spec = _Spec(model, self._plan.with_steps(self._sizes(model.operator)),
                     (len(ops), len(fs)), self.compile)
        return _Unrolled.apply(spec, x_tilde, *ops, *fs, *gs)

    def extra_repr(self) -> str:
        return (f"operator={self._start.operator!r}, iterations={self.iterations}, "
                f"method={self.method!r}" + (f", compile={self.compile!r}" if self.compile else ""))
