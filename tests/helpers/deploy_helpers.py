"""PaddleSeg v2.8.0's deploy/python/infer.py, reproduced (its calls, in its
order; not its code) for tests/test_deploy.py and
benchmarks/deploy_agreement.py."""

import os

import numpy as np
import yaml
from PIL import Image


def deploy_transforms(deploy):
    """The Compose of ``Deploy.transforms``, built as predict.py builds its own."""
    from paddleseg.cvlibs import builder
    from paddleseg.transforms import Compose
    return Compose([builder.build_component(dict(t), 'Deploy.transforms.{}'.format(i))
                    for i, t in enumerate(deploy['transforms'])])


def paddleseg_infer(deploy_yaml, image_paths, save_dir, enable_mkldnn=False,
                    with_argmax=False, cpu_threads=2, batch_size=1):
    """What PaddleSeg v2.8.0's deploy/python/infer.py does on a CPU.

    Reads Deploy.model, Deploy.params and Deploy.transforms; builds
    ``Config(model, params)``, ``disable_glog_info()``,
    ``enable_memory_optim()``, ``switch_ir_optim(True)``, ``disable_gpu()``,
    with ``enable_mkldnn`` also ``set_mkldnn_cache_capacity(10)`` and
    ``enable_mkldnn()``, then ``set_cpu_math_library_num_threads``; feeds the
    first input, reads the first output, takes the argmax over axis 1 only
    with ``with_argmax``, and saves each result as a palette PNG named after
    the image. Returns the PNG paths.
    """
    from paddle.inference import Config, create_predictor
    with open(deploy_yaml) as f:
        deploy = yaml.safe_load(f)['Deploy']
    folder = os.path.dirname(deploy_yaml)
    transforms = deploy_transforms(deploy)
    config = Config(os.path.join(folder, deploy['model']),
                    os.path.join(folder, deploy['params']))
    config.disable_glog_info()
    config.enable_memory_optim()
    config.switch_ir_optim(True)
    config.disable_gpu()
    if enable_mkldnn:
        config.set_mkldnn_cache_capacity(10)
        config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(cpu_threads)
    predictor = create_predictor(config)
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output_handle = predictor.get_output_handle(predictor.get_output_names()[0])
    os.makedirs(save_dir, exist_ok=True)
    saved = []
    for i in range(0, len(image_paths), batch_size):
        batch = image_paths[i:i + batch_size]
        data = np.array([transforms({'img': p})['img'] for p in batch])
        input_handle.reshape(data.shape)
        input_handle.copy_from_cpu(data)
        predictor.run()
        results = output_handle.copy_to_cpu()
        if with_argmax:
            results = np.argmax(results, axis=1)
        for result, path in zip(results, batch):
            im = Image.fromarray(result.astype(np.uint8), mode='P')
            im.putpalette([v for c in range(256) for v in (c, 255 - c, (7 * c) % 256)])
            out = os.path.join(save_dir, os.path.splitext(os.path.basename(path))[0] + '.png')
            im.save(out)
            saved.append(out)
    return saved
