"""The codebase's shape, checked: module and function sizes, layers that only
point down, one code path in the models, a registry module free of config.

The limits are the project's (docs/testing.md): a module of ``paddleseg/``
holds at most :data:`MAX_MODULE_LINES` lines (the transforms catalogue
aside), a function at most :data:`MAX_FUNCTION_LINES` lines of code
(docstrings, comments and blank lines aside). Each checker is also run on a
small hand-written source that breaks its rule, so a checker that sees
nothing fails here.
"""

import ast
import io
import os
import re
import subprocess
import sys
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'paddleseg')

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
CATALOGUES = {'transforms/transforms.py'}
"""Modules that are catalogues of small registered components, exempt from
the module size (each function in them is still limited)."""

LAYERS = {
    # package (below paddleseg.) -> the packages it must not import
    'errors': ('core', 'deploy', 'cli'),
    'utils': ('core', 'deploy', 'cli'),
    'models': ('core', 'deploy', 'cli'),
    'transforms': ('core', 'deploy', 'cli'),
    'datasets': ('core', 'deploy', 'cli'),
    'optimizers': ('core', 'deploy', 'cli'),
    'cvlibs': ('core', 'deploy', 'cli'),
    'core': ('deploy', 'cli'),
    'deploy': ('cli',),
}
GRAPH_MODE_NAMES = ('in_dynamic_mode', 'in_pir_mode', 'in_dygraph_mode', 'LayerHelper')
"""Names whose use in ``paddleseg/models`` would be a static/dynamic-graph
branch (export implementations live in ``paddleseg/deploy``)."""


def package_modules():
    """``(relative path, absolute path)`` of every module of paddleseg/."""
    found = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, PACKAGE).replace(os.sep, '/'), path))
    return sorted(found)


def read(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def code_lines(source):
    """The numbers of the lines holding code: not blank, not only a
    comment, not part of a docstring."""
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        lines.update(range(tok.start[0], tok.end[0] + 1))
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, 'body', None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            lines.difference_update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def long_functions(source, limit=MAX_FUNCTION_LINES):
    """``[(name, lines of code)]`` of the functions over ``limit``."""
    code = code_lines(source)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            count = len(code.intersection(range(first, node.end_lineno + 1)))
            if count > limit:
                found.append((node.name, count))
    return found


MODULE_STRING = re.compile(r'paddleseg(\.\w+)+:\w+')
"""A string that names a module of paddleseg and an attribute of it, such
as ``'paddleseg.core.val:evaluate'``: an import made later by name."""


def imported_modules(source):
    """Every module an ``import`` names, at any depth (inside functions
    too), every string passed to ``importlib.import_module`` and every
    string constant of the form ``'paddleseg.x.y:attr'``."""
    names = []
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings and MODULE_STRING.fullmatch(node.value)):
            names.append(node.value)
        elif (isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'import_module'
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += ['{}.{}'.format(node.module, alias.name) for alias in node.names]
    return names


def forbidden_imports(source, package):
    """The imports of ``source`` (a module of ``paddleseg.<package>``) that
    reach a higher layer."""
    higher = LAYERS.get(package, ())
    return [name for name in imported_modules(source)
            if any(name == 'paddleseg.' + up or name.startswith('paddleseg.{}.'.format(up))
                   for up in higher)]


def graph_mode_uses(source):
    """The names of :data:`GRAPH_MODE_NAMES` that ``source`` uses."""
    used = []
    for node in ast.walk(ast.parse(source)):
        name = node.attr if isinstance(node, ast.Attribute) else (
            node.id if isinstance(node, ast.Name) else None)
        if name in GRAPH_MODE_NAMES:
            used.append(name)
    for name in imported_modules(source):
        if name.rsplit('.', 1)[-1] in GRAPH_MODE_NAMES:
            used.append(name)
    return used


# -- the checkers can fail ---------------------------------------------------

def test_checkers_catch_what_they_look_for():
    def function(statements):
        body = '\n'.join('    x{0} = {0}  # c'.format(i) for i in range(statements))
        return 'def f():\n    """Doc.\n\n    More.\n    """\n    # only a comment\n\n' + body
    assert long_functions(function(81)) == [('f', 82)]  # the def line and 81 statements
    assert long_functions(function(79)) == []
    assert long_functions('def g():\n' + '\n'.join('    y = 1' for _ in range(79))) == []
    nested = 'def outer():\n    def inner():\n        import paddleseg.core.val\n'
    assert forbidden_imports(nested, 'utils') == ['paddleseg.core.val']
    assert forbidden_imports('from paddleseg import core\n', 'models') == ['paddleseg.core']
    assert forbidden_imports("importlib.import_module('paddleseg.deploy')\n", 'core') == \
        ['paddleseg.deploy']
    assert forbidden_imports("RECEIVER = 'paddleseg.core.val:evaluate'\n", 'cvlibs') == \
        ['paddleseg.core.val:evaluate']
    assert forbidden_imports('import paddleseg.core\n', 'deploy') == []
    assert forbidden_imports('from paddleseg.cvlibs import manager\n', 'utils') == []
    assert graph_mode_uses('if paddle.in_dynamic_mode():\n    pass\n') == ['in_dynamic_mode']
    assert graph_mode_uses('from paddle.base.layer_helper import LayerHelper\n')
    assert graph_mode_uses('y = paddle.nn.functional.relu(x)\n') == []


# -- the codebase ------------------------------------------------------------

def test_modules_are_small():
    big = ['{} ({} lines)'.format(rel, len(read(path).splitlines()))
           for rel, path in package_modules()
           if rel not in CATALOGUES and len(read(path).splitlines()) > MAX_MODULE_LINES]
    assert not big, 'modules over {} lines: {}'.format(MAX_MODULE_LINES, ', '.join(big))


def test_functions_are_short():
    long = ['{}:{} ({} lines of code)'.format(rel, name, count)
            for rel, path in package_modules() for name, count in long_functions(read(path))]
    assert not long, 'functions over {} lines of code: {}'.format(
        MAX_FUNCTION_LINES, ', '.join(long))


def test_layers_only_point_down():
    wrong = []
    for rel, path in package_modules():
        package = rel.split('/')[0].rsplit('.py', 1)[0]
        wrong += ['{} imports {}'.format(rel, name)
                  for name in forbidden_imports(read(path), package)]
    assert not wrong, '; '.join(wrong)


def test_models_have_one_code_path():
    branches = ['{}: {}'.format(rel, ', '.join(graph_mode_uses(read(path))))
                for rel, path in package_modules()
                if rel.startswith('models/') and graph_mode_uses(read(path))]
    assert not branches, 'static/dynamic-graph branches in paddleseg/models: {}'.format(
        '; '.join(branches))


@pytest.mark.parametrize('module, unwanted', [
    ('paddleseg.cvlibs.manager', ('paddleseg.cvlibs.config', 'paddleseg.cvlibs.builder',
                                  'paddleseg.optimizers', 'paddleseg.core')),
    ('paddleseg', ('paddleseg.core', 'paddleseg.deploy', 'paddleseg.cli')),
    ('paddleseg.utils', ('paddleseg.core', 'paddleseg.deploy', 'paddleseg.cli')),
])
def test_importing_a_lower_layer_pulls_in_no_higher_one(module, unwanted):
    code = ('import sys, {0}\n'
            'print(" ".join(sorted(m for m in sys.modules if m.startswith("paddleseg"))))'
            .format(module))
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert module in out
    pulled = [name for name in out if any(name == u or name.startswith(u + '.')
                                          for u in unwanted)]
    assert not pulled, 'import {} also imported {}'.format(module, pulled)
