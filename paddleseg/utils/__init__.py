"""Helpers shared by the toolkit: logging, downloads, checkpoints, environment."""

from paddleseg.utils import logger
from paddleseg.utils.checkpoint import (LoadResult, find_latest_checkpoint, load_checkpoint,
                                        load_entire_model, load_pretrained_model,
                                        load_state_file, prune_checkpoints, save_checkpoint,
                                        save_safetensors)
from paddleseg.utils.download import download_file, extract_archive, fetch_pretrained
from paddleseg.utils.dist import device_kind as get_device  # noqa: F401  (the kind of device)
from paddleseg.utils.env import seed_everything, set_cpu_threads


def get_image_list(image_path):
    """PaddleSeg's ``get_image_list``: the images to predict.

    Args:
        image_path (str): An image, a folder (walked recursively; non-images
            skipped with a warning) or a ``.txt`` list of image paths.

    Returns:
        tuple(list[str], str|None): ``(image_list, image_dir)``: the image
        paths (sorted for a folder) and the folder their relative paths
        start from (None for a single image or a list).

    Raises:
        DatasetError: the path does not exist or holds no image.
    """
    # imported here: paddleseg.core imports this package
    from paddleseg.core.predict import collect_images
    return collect_images(image_path)
