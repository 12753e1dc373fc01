"""The dynamic part of pyproject.toml: the dependencies, from requirements.txt.

requirements.txt is the one list of what this project needs (run.sh and the
README install from it). The package takes every requirement in it (following
``-r`` includes) except PaddlePaddle, which becomes the ``paddle`` extra: see
the comment at the top of pyproject.toml.
"""

import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
_PADDLE = re.compile(r'paddlepaddle(-gpu)?\s*($|[<>=!~;\[ ])', re.IGNORECASE)


def read_requirements(path):
    """The requirement lines of ``path`` (comments, blank lines and pip
    options dropped; ``-r other.txt`` followed)."""
    requirements = []
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            line = line.split(' #', 1)[0].strip()
            if not line or line.startswith('#'):
                continue
            if line.startswith(('-r ', '--requirement ')):
                included = line.split(None, 1)[1].strip()
                requirements += read_requirements(
                    os.path.join(os.path.dirname(path), included))
            elif not line.startswith('-'):
                requirements.append(line)
    return requirements


def split_paddle(requirements):
    """``(others, paddle lines)``."""
    paddle = [req for req in requirements if _PADDLE.match(req)]
    return [req for req in requirements if req not in paddle], paddle


if __name__ == '__main__':
    _others, _paddle = split_paddle(
        read_requirements(os.path.join(HERE, 'requirements.txt')))
    setup(install_requires=_others, extras_require={'paddle': _paddle})
