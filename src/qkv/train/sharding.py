"""Memory levers for large models: fully sharded data parallel (FSDP) and activation checkpointing.

Neither changes the maths of the Transformer (§3); both trade time for memory so that a bigger model or batch
fits on each device.

- **Activation checkpointing** keeps only each layer's *input* during the forward pass and recomputes the
  layer's inside during the backward pass (Chen et al. 2016). Memory for activations drops from
  O(L · everything inside a layer) to O(L · B·T·D) plus one layer's worth; the price is one extra forward of
  every layer (≈ +33 % compute). Dropout masks are reproduced exactly in the recomputation (the RNG state is
  saved), so loss and gradients are those of the plain model.
- **FSDP** shards every parameter, gradient and optimizer state across the ``W`` data-parallel ranks
  (ZeRO-3, Rajbhandari et al. 2020): each rank keeps 1/W of them and all-gathers a layer's full weights just
  before using it. With one FSDP unit per encoder/decoder layer only one layer's full weights exist at a
  time. It needs an initialised process group (``torchrun`` sets one up).

Both are applied from outside: the model files are not changed, and ``state_dict()`` keys stay those of the
plain model (checkpoints load either way; under FSDP2 the values are ``DTensor`` shards to gather first).
The trainer calls them behind its ``activation_checkpointing`` and ``fsdp`` flags; apply checkpointing first,
then FSDP, then build the optimizer (FSDP replaces the parameters by sharded ones).

Checkpoints of an FSDP run are those of a plain run: :func:`gather_full_state` all-gathers the full weights
and the full optimizer state onto rank 0 (in the ``optimizer.state_dict()`` layout of the plain model), and
:func:`load_full_optimizer_state` hands each rank its shards of such a state again, so a run can be resumed
with or without FSDP and its weights load anywhere.

Example:
    >>> model = apply_activation_checkpointing(Transformer(config))
    >>> model = wrap_fsdp(model, param_dtype=torch.bfloat16)  # inside torchrun, after init_process_group
    >>> optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from qkv.nn.layers import DecoderLayer, EncoderLayer

#: The modules that become one checkpointing / sharding unit each: the N layers of the encoder and decoder.
LAYER_TYPES: tuple[type[nn.Module], ...] = (EncoderLayer, DecoderLayer)


def apply_activation_checkpointing(
    model: nn.Module, layer_types: tuple[type[nn.Module], ...] = LAYER_TYPES
) -> nn.Module:
    """Recompute every encoder/decoder layer in the backward pass instead of storing its activations.

    Each module of ``layer_types`` is wrapped, in place, by PyTorch's ``checkpoint_wrapper`` (non-reentrant
    :func:`torch.utils.checkpoint.checkpoint`, RNG state preserved). The wrapper strips its own name from
    ``state_dict()`` keys, so checkpoints of the plain and the checkpointed model are interchangeable.
    Without gradients (evaluation, decoding) the layers run once, as usual.

    Do not combine with a decoding cache while gradients are enabled: the recomputation would append the
    same keys/values to the cache a second time.

    Args:
        model: any module containing the layers, e.g. a :class:`qkv.Transformer` or a classifier.
        layer_types: the module classes to checkpoint (default: :class:`EncoderLayer`, :class:`DecoderLayer`).

    Returns:
        ``model`` itself, modified in place.

    Example:
        >>> model = apply_activation_checkpointing(Transformer(config))
        >>> model(src, tgt).sum().backward()  # same gradients, less activation memory
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        CheckpointWrapper,
        checkpoint_wrapper,
    )
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing as apply_wrapper,
    )

    if any(isinstance(m, CheckpointWrapper) for m in model.modules()):
        raise ValueError("activation checkpointing is already applied to this model")
    if not any(isinstance(m, layer_types) for m in model.modules()):
        names = ", ".join(t.__name__ for t in layer_types)
        raise ValueError(f"{type(model).__name__} contains no {names} to checkpoint")
    wrap = functools.partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    apply_wrapper(model, checkpoint_wrapper_fn=wrap, check_fn=lambda m: isinstance(m, layer_types))
    return model


def _sharding_units(model: nn.Module, layer_types: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    """The layers to shard one by one, in order: a checkpoint wrapper rather than the layer inside it."""
    units: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():  # parents come before their children
        inner = getattr(module, "_checkpoint_wrapped_module", None)
        if isinstance(inner, layer_types):
            units.append(module)
            inside.add(id(inner))
        elif isinstance(module, layer_types) and id(module) not in inside:
            units.append(module)
    return units


def wrap_fsdp(
    model: nn.Module,
    *,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = None,
    reshard_after_forward: bool = True,
    mesh=None,
    layer_types: tuple[type[nn.Module], ...] = LAYER_TYPES,
) -> nn.Module:
    """Shard ``model`` across the data-parallel ranks: one FSDP unit per encoder/decoder layer, then the root.

    Uses FSDP2 (``torch.distributed.fsdp.fully_shard``, torch ≥ 2.6): each layer, then the whole model
    (embeddings, tied generator, final norms), is sharded in place; the parameters become ``DTensor`` shards
    and ``model.encode`` / ``model.decode`` stay usable (registered as FSDP forward methods). Older torch has
    only the FSDP1 wrapper, whose one entry point is ``forward`` (no decoding): it is refused with a message.

    The process group must be initialised (``torch.distributed.init_process_group``, e.g. by ``torchrun``)
    and, on GPUs, the model already on this rank's device. Build the optimizer *after* this call.

    Args:
        model: the model (e.g. a :class:`qkv.Transformer`), optionally with activation checkpointing applied.
        param_dtype: mixed precision: dtype the gathered weights are computed in (e.g. ``torch.bfloat16``);
            ``None`` keeps the parameters' dtype. The sharded master weights stay in their own dtype.
        reduce_dtype: dtype of the gradient reduce-scatter (default: ``param_dtype``; fp32 is safer).
        reshard_after_forward: free each layer's gathered weights after its forward (ZeRO-3, least memory)
            or keep them until the backward (ZeRO-2 style, one all-gather fewer per layer).
        mesh: FSDP2 ``DeviceMesh``; default: all ranks of the default group on the parameters' device type.
        layer_types: the classes that become one FSDP unit each.

    Returns:
        ``model`` itself, sharded in place.

    Example:
        >>> torch.distributed.init_process_group("nccl")  # under torchrun
        >>> model = wrap_fsdp(Transformer(config).cuda(), param_dtype=torch.bfloat16,
        ...                   reduce_dtype=torch.float32)
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "wrap_fsdp needs an initialised process group: run under torchrun and call "
            "torch.distributed.init_process_group() first (backend 'nccl' on GPUs, 'gloo' on CPU)"
        )
    units = _sharding_units(model, layer_types)
    if not units:
        names = ", ".join(t.__name__ for t in layer_types)
        raise ValueError(f"{type(model).__name__} contains no {names} to shard")
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
    except ImportError as err:
        raise RuntimeError(
            f"fsdp needs FSDP2 (torch.distributed.fsdp.fully_shard, torch >= 2.6), not torch {torch.__version__}"
        ) from err
    from torch.distributed.device_mesh import init_device_mesh

    if mesh is None:
        device_type = next(model.parameters()).device.type
        if device_type == "meta":  # not materialised yet: FSDP2 will create the shards on the mesh device
            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype or param_dtype)
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    for method in ("encode", "decode"):  # entry points besides forward (decoding, attention maps)
        if callable(getattr(model, method, None)):
            register_fsdp_forward_method(model, method)
    return model


# -- full (unsharded) checkpoints of a sharded model -------------------------------------------------------
#: Names that wrappers insert into parameter names; torch.distributed.checkpoint's canonical names drop them.
_WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.")


def _state_dict_api():
    """``torch.distributed.checkpoint.state_dict`` (torch ≥ 2.4), or a clear error."""
    try:
        from torch.distributed.checkpoint import state_dict as api

        api.StateDictOptions(full_state_dict=True, cpu_offload=True)
    except (ImportError, AttributeError, TypeError) as err:
        raise RuntimeError(
            "saving or resuming an FSDP run needs torch.distributed.checkpoint.state_dict with "
            f"StateDictOptions(full_state_dict=, cpu_offload=) (torch >= 2.4), not usable in torch "
            f"{torch.__version__}: {err}"
        ) from err
    return api


def _optimizer_param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Canonical name of every parameter of ``optimizer``, in the optimizer's order (its ids 0, 1, …)."""
    names: dict[nn.Parameter, str] = {}
    for name, param in model.named_parameters():  # tied parameters once, under their first name
        for prefix in _WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        names[param] = name
    try:
        return [names[p] for group in optimizer.param_groups for p in group["params"]]
    except KeyError as err:
        raise ValueError("the optimizer holds a parameter that is not one of the model's") from err


def _numbered(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state keyed by parameter names -> keyed by ids 0, 1, … in group order.

    That is the layout of ``optimizer.state_dict()``: torch.distributed.checkpoint names the parameters in the
    optimizer's own order, so the i-th name of the param groups is id i.
    """
    ids: dict[str, int] = {}
    groups = [{**g, "params": [ids.setdefault(name, len(ids)) for name in g["params"]]} for g in state["param_groups"]]
    return {"state": {ids[name]: value for name, value in state["state"].items()}, "param_groups": groups}


def _named(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of :func:`_numbered`: ids -> ``names[id]``."""
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    return {"state": {names[i]: value for i, value in state["state"].items()}, "param_groups": groups}


def gather_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The full (unsharded) weights and optimizer state of an FSDP ``model``, on rank 0's CPU.

    Collective: every rank must call it (the shards are all-gathered piece by piece, and each full tensor goes
    to rank 0's CPU memory, so no device ever holds the whole model). Uses
    ``torch.distributed.checkpoint.state_dict.get_state_dict(model, optimizer,
    options=StateDictOptions(full_state_dict=True, cpu_offload=True))``.

    Returns:
        ``(weights, optimizer_state)`` on rank 0: the model's ``state_dict()`` with full tensors (names of the
        plain model), and the optimizer state in the layout of ``optimizer.state_dict()`` on the plain model
        (parameters numbered in the optimizer's order), so that the checkpoint is that of a run without FSDP.
        Other ranks get two empty dicts.
    """
    api = _state_dict_api()
    options = api.StateDictOptions(full_state_dict=True, cpu_offload=True)
    if not optimizer.state:  # no step yet: get_state_dict would take an lr=0 step to create the Adam moments
        weights = api.get_model_state_dict(model, options=options)
        return weights, (optimizer.state_dict() if weights else {})
    weights, state = api.get_state_dict(model, optimizer, options=options)
    return weights, (_numbered(state) if state else {})


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full optimizer state (``optimizer.state_dict()`` layout of the plain model, e.g. from
    :func:`gather_full_state` or a run without FSDP) into the optimizer of the FSDP ``model``.

    Collective: every rank calls it with the same full state and keeps its own shards of the moments
    (``torch.distributed.checkpoint.state_dict.set_optimizer_state_dict`` with ``full_state_dict=True``).
    Call it after building the optimizer and before the first backward.

    Raises:
        ValueError: the state is for a different number of parameters than the optimizer holds.
    """
    api = _state_dict_api()
    names = _optimizer_param_names(model, optimizer)
    saved = sum(len(g["params"]) for g in state["param_groups"])
    if saved != len(names) or len(state["param_groups"]) != len(optimizer.param_groups):
        raise ValueError(
            f"the optimizer state is for {saved} parameters in {len(state['param_groups'])} groups, this "
            f"optimizer has {len(names)} in {len(optimizer.param_groups)}: it belongs to another model"
        )
    if not state["state"]:  # saved before the first step: nothing to load (set_* would create moments)
        return
    named = _named(state, names)
    api.set_optimizer_state_dict(model, optimizer, named, options=api.StateDictOptions(full_state_dict=True))
