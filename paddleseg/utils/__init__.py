"""Helpers shared by the toolkit: logging, downloads, checkpoints, environment,
image lists. Below every other package of paddleseg but :mod:`paddleseg.errors`:
nothing here imports paddleseg.core, cvlibs, models or the like."""

from paddleseg.utils import logger
from paddleseg.utils.checkpoint import (LoadResult, find_latest_checkpoint, load_checkpoint,
                                        load_entire_model, load_pretrained_model,
                                        load_state_file, prune_checkpoints, save_checkpoint,
                                        save_safetensors)
from paddleseg.utils.download import download_file, extract_archive, fetch_pretrained
from paddleseg.utils.dist import device_kind as get_device  # noqa: F401  (the kind of device)
from paddleseg.utils.env import seed_everything, set_cpu_threads
from paddleseg.utils.images import collect_images, get_image_list

