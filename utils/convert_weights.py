"""Convert a weights file between .pdparams (a pickle: load only files you
trust) and .safetensors (plain tensors, safe to load from anywhere).

    python utils/convert_weights.py output/best_model/model.pdparams model.safetensors
    python utils/convert_weights.py model.safetensors model.pdparams

The suffixes choose the formats. The file must hold a ``{name: tensor}``
dict (a model's weights, not an optimizer state). The output appears
atomically; an existing one is kept unless ``--force`` is given. Exit status
0, or 2 with one line on stderr naming the file.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python utils/convert_weights.py`
    sys.path.insert(0, ROOT)

from paddleseg.cli.args import one_line_errors, user_errors  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='convert_weights.py',
        description='Convert weights between .pdparams and .safetensors.')
    p.add_argument('src', help='The weights file to read (.pdparams or .safetensors).')
    p.add_argument('dst', help='The file to write (the other suffix).')
    p.add_argument('--force', action='store_true', help='Overwrite an existing dst.')
    p.add_argument('--debug', action='store_true', help='Show the traceback of errors.')
    return one_line_errors(p).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(args.debug, 'convert_weights.py'):
        from paddleseg.errors import CheckpointError
        from paddleseg.utils.checkpoint import convert, load_state_file
        if os.path.exists(args.dst) and not args.force:
            raise CheckpointError('{} exists; give --force to overwrite it'.format(args.dst))
        convert(args.src, args.dst)
        print('Wrote {} ({} tensors)'.format(args.dst, len(load_state_file(args.dst))))


if __name__ == '__main__':
    main()
