"""Helpers shared by the toolkit: logging, downloads, checkpoints, environment."""

from paddleseg.utils import logger
from paddleseg.utils.checkpoint import (LoadResult, find_latest_checkpoint, load_checkpoint,
                                        load_entire_model, load_pretrained_model,
                                        load_state_file, prune_checkpoints, save_checkpoint,
                                        save_safetensors)
from paddleseg.utils.download import download_file, extract_archive, fetch_pretrained
from paddleseg.utils.env import get_device, seed_everything, set_cpu_threads
