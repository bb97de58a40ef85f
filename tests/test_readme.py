"""README.md's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```bash\n")
    install_and_train, tests = blocks[1].split("```")[0].strip(), blocks[2].split("```")[0].strip()
    assert "fastbp train" in install_and_train
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()
