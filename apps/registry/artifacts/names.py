"""One spelling for a global a pickle names: `module.name`, after the renames pickle itself
applies to Python 2 streams (protocols 0 to 2: `__builtin__` is `builtins`, ...). The static
walk and the restricted unpickler both use it, so both judge the same name."""

from __future__ import annotations

import _compat_pickle

from apps.registry.artifacts.errors import ArtifactRejected, Reason


def global_name(module: str, name: str, *, proto: int) -> str:
    """`module.name` as pickle would import it; ArtifactRejected for a name that is not a
    plain attribute of its module (pickle >= 4 walks dotted names attribute by attribute,
    which reaches further than the module: `object.__subclasses__`, ...)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    if not name.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise ArtifactRejected(
            Reason.UNSAFE_CONTENT,
            detail=f"names a global that is not a plain attribute of a module: {module!r}, "
            f"{name!r}",
        )
    return f"{module}.{name}"
