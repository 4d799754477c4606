"""Where weight files come from, and proof that they are the registered bytes (torch-free).

:func:`resolve_weights` finds one file in two phases. First every source is asked, in order, for a
local copy, without touching the network: the mirror directory ``$ZOO_WEIGHTS_DIR`` (laid out by repo
id), the repository's ``weights/``, the Hugging Face cache (``$HF_HUB_CACHE`` / ``$HF_HOME``), zoo's
own download cache. Only when none holds the file, and only when online (neither ``ZOO_OFFLINE`` nor
``HF_HUB_OFFLINE`` is set), the remote sources download it: the Hugging Face Hub with the real
``huggingface_hub`` client (``$HF_ENDPOINT``, pinned to the registered commit), then a plain URL
(streamed to a ``.partial`` file under a file lock, verified, then renamed atomically).

Every file found or downloaded is checked against its registered full sha256 (:func:`verify_file`);
a successful check is remembered as a *stamp* keyed by (path, size, mtime, ctime, inode), taken before
the hash and compared after it, so warm loads do not re-hash, a write during the hash is never stamped,
and any later write to the file (even one that restores its size and mtime) invalidates it. A write
through a shared mmap changes neither mtime nor ctime: ``ZOO_ALWAYS_REHASH=1`` hashes every load.
:func:`resolve_weights_record` returns a :class:`ResolvedWeights` (path, sha256, source, name,
verified), which ``zoo.create_model`` attaches to the model as ``model.pretrained_source``.

``hf-hub:org/name[@revision]`` and ``local-dir:/path`` names (:func:`resolve_hub_model`) read the
``config.json`` written by :func:`zoo.save_for_hf` and return its :class:`PretrainedCfg` and verified
weights. The hub knows files and hashes, never architectures.

One module per job: :mod:`.paths` (environment, directories, errors), :mod:`.integrity` (sha256 and
stamps), :mod:`.sources`, :mod:`.resolve`, :mod:`.names` (``hf-hub:`` / ``local-dir:``) and :mod:`.mirror`
(download, mirror, verify).
"""

from .integrity import FileChangedError, always_rehash, canonical_safetensors, verify_file
from .mirror import (
    CheckResult,
    copy_verified,
    download,
    mirror,
    verify_hf_cache,
    verify_local_copies,
    verify_mirror,
)
from .names import is_hub_name, parse_hub_name, resolve_hub_model
from .paths import (
    CARD_NAME,
    CONFIG_NAME,
    HUB_PREFIXES,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    IntegrityError,
    WeightsNotFoundError,
    cache_dir,
    hf_cache_dir,
    hf_endpoint,
    offline_mode,
    repo_weights_dir,
)
from .resolve import ResolvedWeights, record_checkpoint, resolve_weights, resolve_weights_record
from .sources import (
    HubSource,
    MirrorSource,
    RemoteSource,
    RepoWeightsSource,
    UrlSource,
    WeightFile,
    WeightSource,
    convert_command,
    default_sources,
    mirror_paths,
)

__all__ = [
    "WeightsNotFoundError",
    "IntegrityError",
    "WeightFile",
    "WeightSource",
    "RemoteSource",
    "RepoWeightsSource",
    "MirrorSource",
    "HubSource",
    "UrlSource",
    "CheckResult",
    "default_sources",
    "resolve_weights",
    "resolve_weights_record",
    "record_checkpoint",
    "ResolvedWeights",
    "FileChangedError",
    "always_rehash",
    "download",
    "mirror",
    "verify_file",
    "verify_local_copies",
    "verify_hf_cache",
    "verify_mirror",
    "canonical_safetensors",
    "repo_weights_dir",
    "cache_dir",
    "convert_command",
    "hf_cache_dir",
    "hf_endpoint",
    "offline_mode",
    "is_hub_name",
    "parse_hub_name",
    "resolve_hub_model",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "MANIFEST_NAME",
    "HUB_PREFIXES",
    "mirror_paths",
    "copy_verified",
]
