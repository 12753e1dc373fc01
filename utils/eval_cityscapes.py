"""Score Cityscapes label-id PNGs with the official pixel-level evaluation.

Runs ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` in this
process on ``<dataset_root>/gtFine/<split>/*/*_gtFine_labelIds.png`` and the
predictions below ``--results`` (as ``val.py --save_cityscapes`` writes
them), without the environment variables the script otherwise reads, and
prints the official class IoUs and mIoU ("averageScoreClasses").

Example::

    python val.py --config ... --model_path ... --save_cityscapes output/cs_val
    python utils/eval_cityscapes.py --dataset_root data/cityscapes --results output/cs_val
"""

import argparse
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python utils/eval_cityscapes.py`
    sys.path.insert(0, ROOT)

from paddleseg.errors import SegError  # noqa: E402
from paddleseg.utils.cityscapes import evaluate_official  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset_root', required=True,
                   help='The Cityscapes folder (with gtFine/).')
    p.add_argument('--results', required=True,
                   help='Folder of <city>_<seq>_<frame>*.png label-id predictions.')
    p.add_argument('--split', default='val')
    p.add_argument('--json', default=None, metavar='FILE',
                   help="Also write the script's JSON result.")
    p.add_argument('--verbose', action='store_true',
                   help="Show the script's own printout (confusion matrix, ...).")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        result = evaluate_official(args.dataset_root, args.results, args.split,
                                   quiet=not args.verbose, json_file=args.json)
    except SegError as exc:
        print('eval_cityscapes.py: error: {}'.format(exc), file=sys.stderr)
        raise SystemExit(2)
    for name, iou in result['classScores'].items():
        if not math.isnan(iou):
            print('{:<14} {:.4f}'.format(name, iou))
    print('official mIoU (averageScoreClasses): {:.4f}'.format(
        result['averageScoreClasses']))
    return result


if __name__ == '__main__':
    main()
