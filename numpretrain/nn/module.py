"""Module and Parameter: the bookkeeping every layer and model shares (PyTorch's API, smaller).

A Module finds its children and parameters by looking at its own attributes, in the
order they were assigned: a `Parameter` attribute is a parameter, a `Module` attribute
a child, and a `ModuleList` holds a numbered list of children. So

    class Block(Module):
        def __init__(self):
            self.ln_1 = LayerNorm(64)
            self.attn = SelfAttention(64, 4)

has parameters `ln_1.weight`, `ln_1.bias`, `attn.c_attn.weight`, ... (`named_parameters()`),
with nothing to register by hand and no `super().__init__()` required.

Paths. When a module is assigned as an attribute, it learns its parent and its name
there, so every module knows its dotted path in the outermost model (`module.path`,
e.g. "h.0.attn") without the model author doing anything. Modules name the tensors they
produce by that path (`h.0.attn.probs`, `h.0.mlp.fc`), which is what `capture(...)`,
the graph printers and gradcheck's messages show; a parameter's `.name` is its path too
(`h.0.attn.c_attn.weight`).

Randomness. Dropout draws from `module.rng`. `model.set_rng(rng)` gives every submodule
the same `numpy.random.Generator`; before that, a model uses one generator seeded with 0,
shared by all its modules, so results are deterministic either way.
"""

import weakref
from collections import namedtuple

import numpy as np

from numpretrain.autograd.tensor import SUPPORTED_FLOAT_DTYPES, Tensor
from numpretrain.errors import CheckpointError

DEFAULT_SEED = 0  # the seed of a model's dropout generator until set_rng is called

# Bumped whenever a module is attached to a parent, so cached paths know to recompute.
_structure_version = 0


def _bump_structure():
    global _structure_version
    _structure_version += 1


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad=True, float32 unless given float64 data.

    Its `.name` is its path in the model (`h.0.attn.c_attn.weight`), found from the module
    it was first assigned to, unless a name is given explicitly.
    """

    _owner = None          # weakref to the module that first held this parameter
    _attribute = None      # the attribute name there ("weight")
    _explicit_name = None

    def __init__(self, data, name=None):
        data = data.data if isinstance(data, Tensor) else data
        array = np.asarray(data)
        dtype = np.float64 if array.dtype == np.float64 else np.float32
        super().__init__(np.array(array, dtype=dtype), requires_grad=True, name=name)

    @property
    def name(self):
        if self._explicit_name is not None:
            return self._explicit_name
        owner = self._owner() if self._owner is not None else None
        if owner is None:
            return None
        return _join(owner.path, self._attribute)

    @name.setter
    def name(self, value):
        self._explicit_name = value

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]

    def __getstate__(self):  # weakrefs cannot be copied or pickled; the owning module re-links
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state


class StateDictError(CheckpointError):
    """A state dict that does not fit the model: lists every missing key, unexpected key
    and shape mismatch at once."""


LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models: parameters, children, paths, modes, state dicts."""

    training = True      # train() / eval() flip it, recursively
    _parent = None       # weakref to the parent module
    _name_in_parent = None
    _rng = None          # set by set_rng
    _default_rng = None  # the root's generator until set_rng is called
    _path_cache = (-1, "")

    def __init__(self):
        pass  # nothing to set up: subclasses may call it or not

    # ----- attributes: how children and parameters are found -----

    def __setattr__(self, name, value):
        old = self.__dict__.get(name)
        if isinstance(old, Module) and old is not value and old._parent is not None and old._parent() is self:
            old._detach()
        if isinstance(value, Module):
            value._attach(self, name)
        elif isinstance(value, Parameter):
            if value._owner is None or value._owner() is None:
                value._owner, value._attribute = weakref.ref(self), name
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Module) for v in value):
            raise TypeError(f"{type(self).__name__}.{name}: a plain {type(value).__name__} of modules is invisible "
                            f"to parameters() and state_dict(); use ModuleList([...])")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        old = self.__dict__.get(name)
        if isinstance(old, Module) and old._parent is not None and old._parent() is self:
            old._detach()
        object.__delattr__(self, name)

    def _attach(self, parent, name):
        object.__setattr__(self, "_parent", weakref.ref(parent))
        object.__setattr__(self, "_name_in_parent", str(name))
        _bump_structure()

    def _detach(self):
        object.__setattr__(self, "_parent", None)
        object.__setattr__(self, "_name_in_parent", None)
        _bump_structure()

    def _named_children(self):
        """(name, module) for the direct children, in assignment order."""
        return [(k, v) for k, v in self.__dict__.items() if isinstance(v, Module)]

    def _named_own_parameters(self):
        """(name, parameter) for the parameters held directly by this module."""
        return [(k, v) for k, v in self.__dict__.items() if isinstance(v, Parameter)]

    def __getstate__(self):  # for copy.deepcopy and pickle: drop weakrefs, re-link in __setstate__
        state = dict(self.__dict__)
        state.pop("_parent", None)
        state.pop("_name_in_parent", None)
        state.pop("_path_cache", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name, child in self._named_children():
            child._attach(self, name)
        for name, param in self._named_own_parameters():
            if param._owner is None or param._owner() is None:
                param._owner, param._attribute = weakref.ref(self), name

    # ----- where am I -----

    @property
    def path(self):
        """The dotted path of this module in the outermost model ("h.0.attn"); "" for the root."""
        version, path = self._path_cache
        if version != _structure_version:
            parent = self._parent() if self._parent is not None else None
            path = "" if parent is None else _join(parent.path, self._name_in_parent)
            object.__setattr__(self, "_path_cache", (_structure_version, path))
        return path

    def name_output(self, tensor, suffix=None):
        """Name a tensor this module produced by the module's path (plus a suffix); returns it.

        `h.0.attn` + "probs" -> "h.0.attn.probs". A root module's own output stays unnamed.
        """
        name = _join(self.path, suffix) if suffix else self.path
        return tensor.named(name) if name else tensor

    # ----- calling -----

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ----- walking the tree -----

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module ("") and every descendant, each module once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            stack.extend(reversed([(_join(name, child_name), child)
                                   for child_name, child in module._named_children()]))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix="", remove_duplicate=True):
        """(dotted name, Parameter), e.g. ("h.0.attn.c_attn.weight", ...), in assignment order.

        A parameter shared by two modules (tied weights) is listed once, under its first
        name, unless remove_duplicate=False (as state_dict uses: tied weights under both names).
        """
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._named_own_parameters():
                if remove_duplicate and id(param) in seen:
                    continue
                seen.add(id(param))
                yield _join(module_name, name), param

    def parameters(self):
        for _, param in self.named_parameters():
            yield param

    def num_parameters(self):
        """The number of scalars in all parameters (tied weights counted once)."""
        return sum(p.size for p in self.parameters())

    # ----- modes, gradients, randomness, dtype -----

    def train(self, mode=True):
        """Set the training flag (dropout on) on this module and all below it; returns self."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode (dropout off) here and below; returns self."""
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (gradients accumulate until this is called)."""
        for param in self.parameters():
            param.grad = None

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter; returns self."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def set_rng(self, rng):
        """Give this module and every submodule the same numpy.random.Generator (an int seeds a
        new one); dropout draws from it. Returns self."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        for module in self.modules():
            object.__setattr__(module, "_rng", rng)
        return self

    @property
    def rng(self):
        """The generator dropout draws from: the nearest one given by set_rng (this module's or an
        ancestor's), else the outermost model's default generator (seeded with DEFAULT_SEED),
        shared by all its modules."""
        module = self
        while True:
            if module._rng is not None:
                return module._rng
            parent = module._parent() if module._parent is not None else None
            if parent is None:
                break
            module = parent
        if module._default_rng is None:
            object.__setattr__(module, "_default_rng", np.random.default_rng(DEFAULT_SEED))
        return module._default_rng

    def to(self, dtype):
        """Convert every parameter (and its gradient) to float32 or float64, in place; returns self.
        The Parameter objects stay the same, so an optimizer holding them keeps working."""
        dtype = np.dtype(dtype)
        if dtype not in SUPPORTED_FLOAT_DTYPES:
            raise TypeError(f"to(): parameters are float32 or float64, not {dtype}")
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            if param.grad is not None:
                param.grad = param.grad.astype(dtype)
        return self

    # ----- state dicts -----

    def state_dict(self):
        """{dotted name: ndarray copy} for every parameter; tied weights appear under each name."""
        return {name: param.data.copy() for name, param in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state, strict=True):
        """Copy arrays from `state` (name -> ndarray or Tensor) into the parameters, in place.

        Values are converted to each parameter's dtype. A shape mismatch always fails; with
        strict=True so do missing and unexpected keys. One StateDictError lists every problem.
        Tied weights count as present when any of their names is. Returns
        LoadResult(missing_keys, unexpected_keys).
        """
        names_of = {}  # id(param) -> all its names
        params = {}
        for name, param in self.named_parameters(remove_duplicate=False):
            params[name] = param
            names_of.setdefault(id(param), []).append(name)
        missing = [name for name, param in params.items()
                   if name not in state and not any(alias in state for alias in names_of[id(param)])]
        unexpected = [key for key in state if key not in params]
        mismatched = []
        for key, value in state.items():
            if key in params:
                shape = np.shape(value.data if isinstance(value, Tensor) else value)
                if shape != params[key].shape:
                    mismatched.append(f"{key}: checkpoint {tuple(shape)}, model {params[key].shape}")
        if mismatched or (strict and (missing or unexpected)):
            problems = [f"{type(self).__name__}.load_state_dict: the state dict does not fit the model"]
            if missing:
                problems.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
            if unexpected:
                problems.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
            if mismatched:
                problems.append(f"  shape mismatches ({len(mismatched)}): " + "; ".join(mismatched))
            raise StateDictError("\n".join(problems))
        for key, value in state.items():
            if key in params:
                params[key].data[...] = np.asarray(value.data if isinstance(value, Tensor) else value)
        return LoadResult(missing, unexpected)

    # ----- printing -----

    def extra_repr(self):
        """The text inside the parentheses of this module's line in repr (override per layer)."""
        return ""

    def _repr_lines(self, indent):
        own = self._named_own_parameters()
        children = self._named_children()
        line = f"{type(self).__name__}({self.extra_repr()})"
        if children:
            line += f"  # {self.num_parameters():,} parameters"
            if own:
                line += ", own: " + ", ".join(f"{n} {p.shape}" for n, p in own)
        elif own:
            line += "  # " + ", ".join(f"{n} {p.shape}" for n, p in own)
        lines = [line]
        for name, child in self._child_repr_groups():
            child_lines = child._repr_lines(indent + "  ")
            lines.append(f"{indent}  ({name}): {child_lines[0]}")
            lines.extend(child_lines[1:])
        return lines

    def _child_repr_groups(self):
        return self._named_children()

    def __repr__(self):
        return "\n".join(self._repr_lines(""))


class ModuleList(Module):
    """A list of modules whose children are named "0", "1", ... (`h.0.attn.c_attn.weight`)."""

    def __init__(self, modules=()):
        object.__setattr__(self, "_items", [])
        self.extend(modules)

    def _renumber(self):
        for i, module in enumerate(self._items):
            module._attach(self, i)

    def _check(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds modules, got {type(module).__name__}")
        return module

    def append(self, module):
        self._items.append(self._check(module))
        module._attach(self, len(self._items) - 1)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        self._items.insert(index, self._check(module))
        self._renumber()

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self._items[index])  # a plain list: the modules stay children of this one
        return self._items[index]

    def __setitem__(self, index, module):
        old = self._items[index]
        self._items[index] = self._check(module)
        if old._parent is not None and old._parent() is self and old not in self._items:
            old._detach()
        self._renumber()

    def __delitem__(self, index):
        removed = self._items[index]
        del self._items[index]
        for module in removed if isinstance(removed, list) else [removed]:
            module._detach()
        self._renumber()

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def _named_children(self):
        return [(str(i), module) for i, module in enumerate(self._items)]

    def forward(self, *args, **kwargs):
        raise TypeError("a ModuleList is not callable: loop over it, e.g. `for block in self.h: x = block(x)`")

    def _repr_lines(self, indent):
        if not self._items:
            return ["ModuleList()"]
        lines = [f"ModuleList  # {len(self._items)} modules, {self.num_parameters():,} parameters"]
        # consecutive identical children print once: "(0-3): 4 x TransformerBlock(...)"
        groups = []
        for i, module in enumerate(self._items):
            text = module._repr_lines(indent + "  ")
            if groups and groups[-1][2] == text:
                groups[-1][1] = i
            else:
                groups.append([i, i, text])
        for first, last, text in groups:
            label = str(first) if first == last else f"{first}-{last}"
            count = "" if first == last else f"{last - first + 1} x "
            lines.append(f"{indent}  ({label}): {count}{text[0]}")
            lines.extend(text[1:])
        return lines
