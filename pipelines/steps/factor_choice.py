"""Which stored factor set a step uses: the one named, or the best one of the current video."""

from __future__ import annotations

import os

from storage.errors import StoreNotFoundError
from storage.factors import StoredFactors, list_factors, open_factors
from storage.store import StoreLocation
from storage.video_array import StoredVideo, open_video

__all__ = ["choose_factors"]


def choose_factors(
    store: StoreLocation | str | os.PathLike[str] | StoredVideo, name: str | None
) -> StoredFactors:
    """Open the named factors, or the complete set of highest rank tied to the current video.

    Raises
    ------
    StoreNotFoundError
        No complete factors of the store's video (run decompose first).
    FingerprintMismatchError
        The named factors were computed from another video.
    """
    video = store if isinstance(store, StoredVideo) else open_video(store)
    if name is not None:
        return open_factors(video.location, name, expected_fingerprint=video.fingerprint)
    usable = [
        f for f in list_factors(video.location) if f.complete and f.video_fingerprint == video.fingerprint
    ]
    if not usable:
        raise StoreNotFoundError(
            f"{video.location} has no complete factors of its video; run `vidsvd decompose --store "
            f"{video.location} --rank K` first"
        )
    best = max(usable, key=lambda f: (f.rank, f.name))
    return open_factors(video.location, best.name, expected_fingerprint=video.fingerprint)
