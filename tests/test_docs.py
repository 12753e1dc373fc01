"""The documentation holds together: every relative link (and #anchor) in
README.md and docs/*.md resolves, the README stays a front page (at most
250 lines), and the test command it gives is the one .ci/run runs.

Each check is a function of the text it reads, so the tests below also
feed it a broken case and see it fail."""

import glob
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
MAX_README_LINES = 250


_FENCE = re.compile(r'^\s*(```|~~~)')
_INLINE_CODE = re.compile(r'`[^`]*`')
_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_REF_DEF = re.compile(r'^\s*\[[^\]]+\]:\s*(\S+)')
_HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


def doc_files():
    return [README] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def _prose_lines(text):
    """The lines outside fenced code blocks, as (line number, line)."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def links(text):
    """``[(line number, target)]`` of the markdown links and images of
    ``text``, code blocks and inline code left out."""
    found = []
    for number, line in _prose_lines(text):
        line = _INLINE_CODE.sub('', line)
        found += [(number, m.group(1)) for m in _LINK.finditer(line)]
        ref = _REF_DEF.match(line)
        if ref:
            found.append((number, ref.group(1)))
    return found


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link's text
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(text):
    """The anchors GitHub gives the headings of ``text`` (a repeated
    heading gets -1, -2, ...)."""
    seen, result = {}, set()
    for _, line in _prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else '{}-{}'.format(base, count))
    return result


def broken_links(path, text=None, root=ROOT, pending=()):
    """``['file:line: target (why)']`` for each relative link of the file
    at ``path`` whose file or anchor does not exist."""
    if text is None:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    here = os.path.dirname(path)
    broken = []
    for number, target in links(text):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.IGNORECASE):
            continue  # http:, https:, mailto: ...
        file_part, _, anchor = target.partition('#')
        resolved = os.path.normpath(os.path.join(here, file_part)) if file_part else path
        where = '{}:{}: {}'.format(os.path.relpath(path, root), number, target)
        relative = os.path.relpath(resolved, root).replace(os.sep, '/')
        if not os.path.exists(resolved):
            if relative not in pending:
                broken.append(where + ' (no such file)')
            continue
        if anchor and resolved.endswith('.md'):
            with open(resolved, encoding='utf-8') as handle:
                if anchor not in anchors(handle.read()):
                    broken.append(where + ' (no heading #{})'.format(anchor))
    return broken


def ci_commands(script_text):
    """The commands a CI shell script runs (comments, ``set`` and ``cd``
    lines left out)."""
    commands = []
    for line in script_text.splitlines():
        line = line.split(' #', 1)[0].strip()
        if not line or line.startswith('#') or line.split()[0] in ('set', 'cd'):
            continue
        commands.append(' '.join(shlex.split(line)))
    return commands


def readme_test_commands(text):
    """The commands in ``text``'s code blocks that run ``run.sh test`` (not
    ``test-gpu``), comments stripped, spaces normalised."""
    inside, commands = False, []
    for line in text.splitlines():
        if _FENCE.match(line):
            inside = not inside
            continue
        if inside:
            command = line.split('#', 1)[0].strip()
            if re.search(r'\brun\.sh\s+test(\s|$)', command):
                commands.append(' '.join(shlex.split(command)))
    return commands


def _read(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read()


# ------------------------------------------------------------ the real docs

def test_the_docs_exist():
    names = {os.path.basename(p) for p in doc_files()}
    assert {'README.md', 'configs.md', 'training.md', 'evaluation.md',
            'deployment.md', 'python_api.md', 'paddleseg_compatibility.md',
            'performance.md', 'troubleshooting.md', 'testing.md'} <= names
    assert os.path.isfile(os.path.join(ROOT, 'docs', 'README.md'))


@pytest.mark.parametrize('path', doc_files(),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(path):
    assert links(_read(path)), 'no links at all: is the parser broken?'
    assert broken_links(path) == []


def test_every_docs_page_is_in_the_index():
    index = _read(os.path.join(ROOT, 'docs', 'README.md'))
    linked = {target.partition('#')[0] for _, target in links(index)}
    pages = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md'))}
    assert pages - {'README.md'} <= linked


def test_readme_is_a_front_page():
    lines = _read(README).splitlines()
    assert len(lines) <= MAX_README_LINES, (
        'README.md has {} lines; move detail to docs/'.format(len(lines)))


def test_readme_test_command_is_what_ci_runs():
    ci = ci_commands(_read(os.path.join(ROOT, '.ci', 'run')))
    assert ci == ['bash run.sh test']
    for path in (README, os.path.join(ROOT, 'docs', 'testing.md')):
        assert readme_test_commands(_read(path)) == ci, path


def test_benchmark_tables_are_in_benchmarks():
    assert os.path.isfile(os.path.join(ROOT, 'benchmarks', 'BENCHMARKS.md'))
    assert not os.path.exists(os.path.join(ROOT, 'BENCHMARKS.md'))


# ------------------------------------------------- the checks can fail

def test_a_broken_file_link_is_found(tmp_path):
    (tmp_path / 'there.md').write_text('# Title\n\n## Sub part\n')
    page = tmp_path / 'page.md'
    text = ('[ok](there.md) [ok](there.md#sub-part) [web](https://x.org/y)\n'
            '[gone](missing.md)\n'
            '`[code](not-a-link.md)`\n'
            '```\n[in a block](nor-this.md)\n```\n'
            '![img](pic.png)\n'
            '[ref]: ../elsewhere/file.md\n')
    page.write_text(text)
    assert broken_links(str(page), root=str(tmp_path)) == [
        'page.md:2: missing.md (no such file)',
        'page.md:7: pic.png (no such file)',
        'page.md:8: ../elsewhere/file.md (no such file)']
    assert broken_links(str(page), root=str(tmp_path),
                        pending={'missing.md', 'pic.png', '../elsewhere/file.md'}) == []


def test_a_broken_anchor_is_found(tmp_path):
    (tmp_path / 'there.md').write_text(
        '# Title\n## Running val.py and `predict.py`\n## Title\n'
        '```\n# not a heading\n```\n')
    page = tmp_path / 'page.md'
    page.write_text('[a](there.md#running-valpy-and-predictpy) [b](there.md#title-1)\n'
                    '[c](there.md#not-a-heading) [d](#here) [e](#nowhere)\n'
                    '## Here\n')
    assert broken_links(str(page), root=str(tmp_path)) == [
        'page.md:2: there.md#not-a-heading (no heading #not-a-heading)',
        'page.md:2: #nowhere (no heading #nowhere)']


def test_slugs_follow_github():
    assert slug("PaddleSeg's deployment script") == 'paddlesegs-deployment-script'
    assert slug('Why 4x is out of reach on a 2-core CPU') == 'why-4x-is-out-of-reach-on-a-2-core-cpu'
    assert slug('The process: CPU settings and signals') == 'the-process-cpu-settings-and-signals'
    assert slug('Configs and building: `Config` and `SegBuilder`') == \
        'configs-and-building-config-and-segbuilder'


def test_a_long_readme_is_refused(tmp_path, monkeypatch):
    long_readme = tmp_path / 'README.md'
    long_readme.write_text('line\n' * (MAX_README_LINES + 1))
    monkeypatch.setitem(globals(), 'README', str(long_readme))
    with pytest.raises(AssertionError, match='251 lines'):
        test_readme_is_a_front_page()


def test_a_different_test_command_is_found():
    ci = ci_commands('#!/usr/bin/env bash\n# comment\nset -euo pipefail\n'
                     'cd "$(dirname "$0")/.."\nbash run.sh test\n')
    assert ci == ['bash run.sh test']
    assert readme_test_commands('```bash\nbash run.sh test    # runs it\n'
                                'bash run.sh test-gpu\n```\n') == ci
    assert readme_test_commands('```bash\nbash run.sh test -x\n```\n') != ci
    assert readme_test_commands('```bash\npython -m pytest -q tests\n```\n') != ci
    assert readme_test_commands('bash run.sh test\n') == []  # prose, not a command
