"""Artifact formats: `joblib` (pickle: loading runs whatever code the file names) and `skops`
(a zip of JSON and .npy files: loading builds only types on an allow-list).

For skops, the allow-list is skops's own defaults (builtins, numpy and scipy basics, every
scikit-learn estimator) plus BULWARK_SKOPS_TRUSTED_TYPES (default below). An upload is
inspected without being loaded (`skops.io.get_untrusted_types`) and refused if it names any
other type; the verified load passes the same list to skops, which refuses on its own.

skops checks types, not content: every loaded model's decision trees are checked before it is
handed out (apps.registry.artifacts.loading.check_trees), as for joblib artifacts.
"""

from __future__ import annotations

import io
import zipfile

import skops.io
from django.conf import settings

from apps.core.errors import InvalidInput

# Types skops reports as untrusted for the models we expect (checked with skops 0.16 and
# scikit-learn 1.9): linear models, pipelines, scalers, SVMs, PCA, k-means and naive Bayes
# report none (skops trusts every scikit-learn estimator); trees, random forests, extra trees
# and gradient boosting report the Tree; SimpleImputer reports numpy.dtype. Deliberately absent:
# HistGradientBoosting's TreePredictor (unchecked indices; it also needs functools.partial, a
# generic callable) and the k-d/ball trees of nearest neighbours (unchecked indices).
DEFAULT_SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
)


def skops_trusted_types() -> list[str]:
    """BULWARK_SKOPS_TRUSTED_TYPES, or the default: fully qualified type names."""
    trusted = getattr(settings, "BULWARK_SKOPS_TRUSTED_TYPES", DEFAULT_SKOPS_TRUSTED_TYPES)
    if isinstance(trusted, str) or not all(isinstance(name, str) for name in trusted):
        # A bare string would be read as its characters; anything else is a configuration bug.
        raise TypeError("BULWARK_SKOPS_TRUSTED_TYPES must be a list of type names")
    return list(trusted)


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"artifact: {message}", details=[{"path": "artifact", "message": message}])


def skops_check_upload(data: bytes, *, limit: int) -> None:
    """Refuse (InvalidInput, path `artifact`) a skops upload that is not a readable skops file,
    unpacks to more than `limit` bytes, or names a type outside the trusted list. Nothing is
    constructed or imported: skops builds its node tree from the JSON schema and lists the
    types it would need."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # A compressed member could unpack to far more than was uploaded (a zip bomb):
            # bound what skops would read by what the members declare (zipfile reads no more).
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _invalid("is not a skops file (not a zip archive)") from None
    if unpacked > limit:
        raise _invalid(f"unpacks to {unpacked} bytes, more than the limit of {limit}")
    try:
        found = skops.io.get_untrusted_types(data=data)
    except Exception:  # an untrusted file may fail anywhere in skops's parser: refuse it
        raise _invalid("is not a readable skops file") from None
    untrusted = sorted(set(found) - set(skops_trusted_types()))
    if untrusted:
        raise _invalid(
            "holds types that are not trusted (BULWARK_SKOPS_TRUSTED_TYPES): "
            + ", ".join(untrusted)
        )
