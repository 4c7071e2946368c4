"""Files and what is kept on disk: checkpoints (safe loading, identity), the model
catalogue and its downloads, the embedding cache, trained plugin files and their index.

Lazy: `from engines.files import ModelEntry` loads only the torch-free catalogue.
"""
from engines._lazy import lazy_exports

_EXPORTS = {
    **{m: "" for m in ("catalogue", "downloader", "cache", "checkpoints", "identity",
                       "plugins", "plugin_meta", "plugin_index")},
    **dict.fromkeys(("CatalogueError", "ModelEntry", "Progress", "load_catalogue", "get_entry",
                     "models_dir", "model_path", "is_installed", "installed", "find_checkpoint",
                     "verify", "ENV_MODELS_DIR", "APP_NAME"), "catalogue"),
    **dict.fromkeys(("DownloadError", "download"), "downloader"),
    **dict.fromkeys(("CacheKey", "CacheError", "EmbeddingCache", "default_cache_dir",
                     "image_digest"), "cache"),
    **dict.fromkeys(("describe_checkpoint", "load_state_dict", "load_into", "peek_state_dict"),
                    "checkpoints"),
    "checkpoint_identity": "identity",
    **dict.fromkeys(("save_plugin", "load_plugin"), "plugins"),
    "read_plugin_metadata": "plugin_meta",
    **dict.fromkeys(("InstalledPlugin", "plugins_dir", "read_installed", "scan_plugins",
                     "find_plugins", "usable_plugin"), "plugin_index"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
