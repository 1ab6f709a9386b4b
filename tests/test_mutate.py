"""`make mutate`'s bookkeeping (tests/mutate.py): the explanations of equivalent mutants are
well formed, name a module group, and are matched by function and diff, not mutmut's number."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mutate  # noqa: E402  (tests/mutate.py, a script beside the tests)

DIFF = "-    x = a + b\n+    x = a - b"


def test_every_explanation_file_loads_and_names_a_group():
    files = sorted(mutate.EQUIVALENT.glob("*.toml"))
    for path in files:
        assert path.stem in mutate.GROUPS, f"{path.name}: no module group '{path.stem}' in tests/mutate.py"
        entries = mutate.load_equivalent(path.stem)  # raises on a missing field or an unknown kind
        modules = {mutate.module_name(f) for f in mutate.GROUPS[path.stem].files}
        for function, _ in entries:
            assert function.rsplit(".", 1)[0] in modules, f"{path.name}: {function} is not in the group's files"


def test_an_explanation_matches_its_mutant_under_any_number_and_reports_stale_ones(tmp_path):
    (tmp_path / "crop.toml").write_text(
        '[[mutant]]\nfunction = "pipelines.crop.x_f"\ndiff = """\n' + DIFF + '  \n"""\nkind = "draw"\nwhy = "w"\n'
        '[[mutant]]\nfunction = "pipelines.crop.x_gone"\ndiff = "-  a\\n+  b"\nkind = "default"\nwhy = "w"\n')
    left = [{"mutant": "pipelines.crop.x_f__mutmut_37", "diff": DIFF},         # renumbered: still matched
            {"mutant": "pipelines.crop.x_f__mutmut_38", "diff": "-    x = a + b\n+    x = a * b"},
            {"mutant": "pipelines.crop.x_g__mutmut_1", "diff": DIFF}]          # same lines, other function
    stale = mutate.explain("crop", left, root=tmp_path)
    assert [m.get("equivalent") for m in left] == ["draw", None, None]
    assert stale == [("pipelines.crop.x_gone", "-  a\n+  b")]


@pytest.mark.parametrize("entry, field", [('function = "f"\ndiff = "-a\\n+b"\nkind = "draw"\n', "why"),
                                          ('function = "f"\ndiff = "-a\\n+b"\nkind = "luck"\nwhy = "w"\n', "kind")])
def test_a_malformed_explanation_names_the_file_and_the_field(tmp_path, entry, field):
    (tmp_path / "crop.toml").write_text("[[mutant]]\n" + entry)
    with pytest.raises(SystemExit, match=rf"crop\.toml mutant #1 \(f\).*{field}"):
        mutate.load_equivalent("crop", root=tmp_path)
