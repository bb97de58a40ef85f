"""README.md's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```bash\n")
    install_and_train, tests = blocks[1].split("```")[0].strip(), blocks[2].split("```")[0].strip()
    assert "fastbp train" in install_and_train
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_prediction_interval_example_prints_what_the_readme_shows(capsys):
    """The quantile example runs as written, and its coverage is the README's (to 2 points: BLAS may sum in
    another order on another machine)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Two quantile regressors give a prediction interval")[1]
    code, shown = section.split("```python\n")[1].split("```")[0], section.split("```\n")[2].split("```")[0]
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    coverage = [float(text.split("holds ")[1].split("%")[0]) for text in (printed, shown)]
    assert abs(coverage[0] - coverage[1]) < 2, (printed, shown)
    assert 85 < coverage[0] < 97  # a 90% interval
