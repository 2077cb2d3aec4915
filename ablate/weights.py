"""Where a scorer's pretrained weights come from, in one fixed order, without the internet if need be.

Order (the first that works wins):

1. an explicit file: the scorer's weights option in the grid (a path: ``clip_weights``,
   ``inception_weights``), or one of the
   accepted file names inside ``--weights-dir`` (``ScoreContext.weights_dir``);
2. the library's own cache (Hugging Face hub cache for open_clip, torch hub's
   ``checkpoints/`` for torch-fidelity), looked up on disk without any network call;
3. the library's own download, tried only when ``HF_HUB_OFFLINE`` is not set and a quick
   TCP connect to the download host succeeds (bounded to ~2 s, answered once per process).

When none works, :class:`ablate.errors.ScorerUnavailableError` names the scorer, the exact
file it needs, where to get it and where to put it.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from ablate.errors import ScorerUnavailableError

Origin = Literal["option", "weights_dir", "cache", "download"]


@dataclass(frozen=True)
class WeightsRequest:
    """What one scorer needs: accepted file names, how to find it in a cache and how to download it."""

    scorer: str
    filenames: tuple[str, ...]                  # names accepted in --weights-dir (first: the canonical one)
    source: str                                 # where a person gets the file (URL)
    download_host: str                          # host probed before trying the library's download
    find_in_cache: Callable[[], Path | None]    # library cache lookup, no network
    download: Callable[[], Path] | None = None  # the library's own download; returns the local file
    option: str = "weights"                     # the grid option that names an explicit file
    explicit: str | os.PathLike | None = None   # that option's value, if any


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    origin: Origin


def scorer_options(options: dict[str, Any], scorer: str) -> dict[str, Any]:
    """A scorer's options: the grid's shared (non-dict) entries, overridden by ``options[scorer]``."""
    shared = {k: v for k, v in options.items() if not isinstance(v, dict)}
    own = options.get(scorer)
    return {**shared, **own} if isinstance(own, dict) else shared


def hub_offline() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=None)
def network_reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Can a TCP connection to ``host`` be opened within ``timeout`` seconds (DNS included)? Cached."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # bounds a slow DNS lookup too
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def download_allowed(host: str) -> bool:
    return not hub_offline() and network_reachable(host)


def locate_weights(request: WeightsRequest, weights_dir: Path | None, download: bool = True) -> ResolvedWeights | None:
    """Find the weights file in the documented order; ``None`` if only a download could provide it.

    With ``download=True`` the library's download is attempted (when allowed) and its file returned.
    Raises :class:`ScorerUnavailableError` when no source can provide the file.
    """
    if request.explicit is not None and str(request.explicit) != "":
        path = Path(request.explicit).expanduser()
        if not path.is_file():
            raise ScorerUnavailableError(
                f"Scorer {request.scorer!r}: its {request.option!r} option points to {str(path)!r}, which is not a file. "
                f"Put {request.filenames[0]!r} (from {request.source}) there, or remove the option so that "
                "--weights-dir, the library cache or the library download are used."
            )
        return ResolvedWeights(path, "option")
    if weights_dir is not None:
        for name in request.filenames:
            path = Path(weights_dir).expanduser() / name
            if path.is_file():
                return ResolvedWeights(path, "weights_dir")
    cached = request.find_in_cache()
    if cached is not None and Path(cached).is_file():
        return ResolvedWeights(Path(cached), "cache")
    if request.download is not None and download_allowed(request.download_host):
        if not download:
            return None
        try:
            return ResolvedWeights(Path(request.download()), "download")
        except Exception as err:  # the library's own error, reported as ours with the way out
            raise unavailable(request, weights_dir, reason=f"the download failed ({type(err).__name__}: {err})") from err
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else f"{request.download_host} cannot be reached"
    raise unavailable(request, weights_dir, reason=f"it is not cached and cannot be downloaded ({reason})")


def unavailable(request: WeightsRequest, weights_dir: Path | None, reason: str) -> ScorerUnavailableError:
    """The one-paragraph error: scorer, the file it needs, where to get it and where to put it."""
    name = request.filenames[0]
    where = (
        f"put it at {str(Path(weights_dir) / name)!r}"
        if weights_dir is not None
        else f"put it at DIR/{name} and pass --weights-dir DIR"
    )
    others = (
        f" (also accepted there: {', '.join(repr(n) for n in request.filenames[1:])})"
        if len(request.filenames) > 1
        else ""
    )
    return ScorerUnavailableError(
        f"Scorer {request.scorer!r} needs the weights file {name!r}, but {reason}. "
        f"Download it from {request.source} on a machine with internet access, then {where}{others}, "
        f"or give the file's path as the {request.option!r} option of the grid's scorers; running once "
        "online also fills the library's cache."
    )


def unloadable(scorer: str, path: str | os.PathLike, network: str, err: Exception) -> ScorerUnavailableError:
    """The weights file was found but does not load (truncated, or for another architecture)."""
    detail = " ".join(str(err).split())[:400]
    return ScorerUnavailableError(
        f"Scorer {scorer!r}: the weights file {str(path)!r} does not load into {network} "
        f"({type(err).__name__}: {detail}). It is probably truncated or made for another model: "
        "replace it with the file the scorer names when it is missing, or remove it to use the library cache."
    )
