"""``dnnbench report --html``: the page of a results file of every command, parsed; and rendered in
headless Chromium (Debian's ``chromium``; skipped only when it is missing outside CI).

The results files come from real runs on tiny synthetic data (made once per test session and
shared by the xdist workers); rows a run rarely makes (an error, an interruption, unknown tags,
a torn last line) are edited copies of real rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dnnbench.cli import main
from dnnbench.render.html import figures

DATA = [
    "--dataset",
    "synthetic:train=200,test=50,features=8,classes=3",
    "--hidden",
    "8",
    "--epochs",
    "3",
    "--batch-size",
    "20",
    "--quiet",
]
COMMANDS = {
    "optimizers": [
        "optimizers",
        "--optimizers",
        "sgd,adam,momentum",
        "--lr",
        "sgd=1e6",
        "--schedule",
        "cosine",
        "--seeds",
        "2",
    ],
    "regularizers": ["regularizers", "--methods", "none,l2,early_stopping", "--seeds", "2"],
    "sweep": ["sweep", "--vary", "activation=relu,sigmoid", "--vary", "depth=1,2"],
    "lr-sensitivity": ["lr-sensitivity", "--optimizers", "sgd,adam", "--points", "4"],
}
SUITE = """
[data]
dataset = "synthetic:train=200,test=50,features=8,classes=3"
[model]
hidden = [8]
[train]
epochs = 3
batch_size = 20
seeds = 2
[[experiment]]
name = "opt"
kind = "optimizers"
optimizers = ["sgd", "adam"]
[[experiment]]
name = "reg"
kind = "regularizers"
methods = ["none", "l2"]
"""


def _make_results(folder: Path) -> None:
    for name, args in COMMANDS.items():
        assert main([*args, *DATA, "--out", str(folder / f"{name}.jsonl")]) == 0, name
    (folder / "suite.toml").write_text(SUITE)
    assert main(["run", str(folder / "suite.toml"), "--quiet", "--out", str(folder / "run.jsonl")]) == 0
    # Rows a healthy run rarely writes: an error with its message, an interrupted trial, tags the
    # report has never heard of (the future `tune` phases), and a torn last line.
    lines = (folder / "optimizers.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    trials = [r for r in rows if r["type"] == "trial"]
    adam = [r for r in trials if r["optimizer"] == "adam"]
    adam[0].update(status="error", error="XlaRuntimeError: RESOURCE_EXHAUSTED <out of memory>", metrics={}, history={})
    adam[1]["status"] = "interrupted"
    for i, r in enumerate(trials):  # as `tune` will write them: a spec tag, in the config and on top
        r["phase"] = r["config"]["tags"]["phase"] = "search" if i % 2 else "final"
    body = "".join(json.dumps(r) + "\n" for r in rows if r["type"] != "summary")
    (folder / "odd.jsonl").write_text(body + '{"type": "trial", "id": "torn')


@pytest.fixture(scope="session")
def results(tmp_path_factory, worker_id) -> Path:
    """A folder with a results file of every command, made once for all xdist workers."""
    root = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    folder = root / "html_report_results"
    with open(root / "html_report_results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            _make_results(folder)
            (folder / "done").touch()
    return folder


class Page(HTMLParser):
    """What a test needs to know of a page: tags, attributes, text, styles and scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("style", "script"):
            self._in.append(tag)
        if "style" in dict(attrs):
            self.styles.append(dict(attrs)["style"] or "")

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "style":
            self.styles.append(data)
        elif not self._in:
            self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def content(self) -> str:
        return " ".join(" ".join(self.text).split())


def _page(cli, tmp_path: Path, *files: Path, extra: tuple[str, ...] = ()) -> tuple[Page, str]:
    out = tmp_path / "report.html"
    result = cli("report", *files, "--html", out, *extra)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    text = out.read_text(encoding="utf-8")
    return Page(text), text


def assert_self_contained(page: Page, text: str) -> None:
    """Nothing the page refers to lies outside it: every link is an in-page anchor."""
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action", "data", "poster", "srcset"):
            if key in attrs:
                assert attrs[key].startswith("#"), (tag, key, attrs[key])
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
    for css in page.styles:
        assert "@import" not in css and "@font-face" not in css
        assert all(u.startswith("#") for u in re.findall(r"url\(\s*['\"]?([^)'\"]*)", css)), css
    assert not re.search(r"https?://", text), re.search(r".{40}https?://.{40}", text)
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text


def test_optimizers_page_has_every_section(cli, results, tmp_path):
    page, text = _page(cli, tmp_path, results / "optimizers.jsonl")
    assert_self_contained(page, text)
    content = page.content
    header = json.loads((results / "optimizers.jsonl").read_text().splitlines()[0])
    env = header["environment"]
    for fact in (
        env["jax"],
        env["flax"],
        env["optax"],
        env["dnnbench"],
        env["git_commit"][:12],
        "synthetic",
        "command",
        "train/val/test 180/20/50",
    ):
        assert fact in content, fact
    assert page.all("h4") and "Comparison" in content and "Learning curves" in content
    # The comparison: one row per optimizer, paired differences over the 2 seeds, best in bold.
    table = text[text.index("<h4>Comparison</h4>") :]
    table = table[: table.index("<h4>Learning curves</h4>")]
    assert table.count('<td class="label">') == 3
    assert "Δ test acc [95% CI] W/T/L" in table and "<strong>" in table and "best" in table
    assert "b1=0.9" in table and "builtin" in table  # hyperparameters and the optimizer's origin
    # Diverged sgd: highlighted, with its epoch, in the table and in the problems box.
    assert "diverged @ epoch 1" in table and '<tr class=bad><td class="label">sgd' in table
    assert "3 of 3" not in content and "2 of 6 trials did not end ok: 2 diverged" in content
    # Curves: one inline SVG with the four metrics and the cosine schedule's learning rate, and
    # the numbers behind it; the legend names every optimizer.
    svgs = page.all("svg")
    assert len(svgs) == 1 and "viewbox" in svgs[0]
    svg = text[text.index("<svg") : text.index("</svg>")]
    for title in ("train loss", "val loss", "train acc", "val acc", "lr", "sgd", "adam", "momentum"):
        assert f">{title}<" in svg, title
    assert "band ±1 std over 2 seeds" in content and "numbers behind the plot" in content
    assert "next experiments" in content and "dnnbench diagnose" in content  # the diagnosis, expandable
    assert page.all("details") and page.all("script") and page.all("table", **{"class": "sortable"})
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("command", ["regularizers", "sweep", "lr-sensitivity", "run"])
def test_every_command_gets_a_page(cli, results, tmp_path, command):
    page, text = _page(cli, tmp_path, results / f"{command}.jsonl")
    assert_self_contained(page, text)
    content = page.content
    assert "Comparison" in content and page.all("svg") and "All " in content
    if command == "regularizers":
        assert "regularizer" in [h for h in re.findall(r"<th scope=\"col\"[^>]*>([^<]+)</th>", text)]
        assert "early_stopping" in content
    if command == "sweep":
        assert "Gradient flow" in content and "layer 2" in content and "grad first/last" in content
    if command == "lr-sensitivity":
        assert "Learning-rate sensitivity" in content and len(page.all("svg")) == 2
        assert ">learning rate<" in text
    if command == "run":  # a suite: one section per experiment, labels without the experiment name
        assert "experiment opt" in content and "experiment reg" in content
        assert len(page.all("svg")) == 2


def test_errors_interruptions_unknown_tags_and_a_torn_line(cli, results, tmp_path):
    page, text = _page(cli, tmp_path, results / "odd.jsonl")
    assert_self_contained(page, text)
    content = page.content
    headers = re.findall(r"<th scope=\"col\"[^>]*>([^<]+)</th>", text)
    assert "phase" in headers  # an unknown tag is a column, not a crash
    assert "error: XlaRuntimeError: RESOURCE_EXHAUSTED &lt;out of memory&gt;" in text  # escaped, shown
    assert "interrupted" in content and "1 error" in content and "1 interrupted" in content


def test_several_files_and_a_baseline_check_regressions_first(cli, results, tmp_path):
    base = tmp_path / "base.jsonl"
    rows = [json.loads(line) for line in (results / "regularizers.jsonl").read_text().splitlines()]
    for row in rows:
        if row["type"] == "trial" and row.get("regularizer") == "l2":
            row["metrics"]["test_acc"] = (row["metrics"]["test_acc"] or 0) + 0.5
    base.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page, text = _page(
        cli, tmp_path, results / "regularizers.jsonl", results / "sweep.jsonl", extra=("--baseline", base)
    )
    assert_self_contained(page, text)
    assert [a["id"] for a in page.all("h2")] == ["file1", "file2"]
    check = text[text.index("Check against") :]
    check = check[: check.index("</table>")]
    verdicts = re.findall(r'<td class="status">(?:⚠ )?([a-z ]+)</td>', check)
    assert verdicts[:2] == ["worse", "worse"] and set(verdicts[2:]) == {"ok"}
    assert "FAIL" in check
    second = text[text.index('id="file2"') :]
    assert "Check against" in second and "new" in second  # sweep trials are new to this baseline


def test_report_html_refuses_to_overwrite_and_to_write_over_an_input(cli, results, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("keep me")
    result = cli("report", results / "sweep.jsonl", "--html", out)
    assert result.exit_code != 0 and out.read_text() == "keep me"
    assert "--force" in str(result.exception) + result.output
    assert cli("report", results / "sweep.jsonl", "--html", out, "--force").exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    copy = tmp_path / "copy.jsonl"
    shutil.copy(results / "sweep.jsonl", copy)
    result = cli("report", copy, "--html", copy, "--force")
    assert result.exit_code != 0 and "input" in str(result.exception) + result.output
    assert copy.read_text() == (results / "sweep.jsonl").read_text()


def test_report_cli_exit_codes(results, tmp_path, capsys):
    assert main(["report", str(results / "sweep.jsonl"), "--baseline", str(results / "sweep.jsonl")]) == 2
    assert "--baseline needs --html" in capsys.readouterr().err
    assert main(["report", str(results / "sweep.jsonl"), str(results / "run.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "sweep.jsonl" in out and "run.jsonl" in out
    assert main(["report", str(results / "odd.jsonl"), "--html", str(tmp_path / "o.html")]) == 0
    assert "torn last line" in capsys.readouterr().err


def test_inline_svg_loses_prolog_metadata_namespaces_and_gets_prefixed_ids():
    svg = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/x.dtd">\n'
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="10pt" height="5pt" viewBox="0 0 10 5" '
        'xmlns="http://www.w3.org/2000/svg"><metadata><rdf:RDF xmlns:dc="http://purl.org/dc/"/></metadata>'
        '<defs><path id="m1"/></defs><use xlink:href="#m1"/><g clip-path="url(#p2)"/></svg>'
    )
    out = figures.inline(svg, prefix="f1-")
    assert out == (
        '<svg viewBox="0 0 10 5"><defs><path id="f1-m1"/></defs><use xlink:href="#f1-m1"/>'
        '<g clip-path="url(#f1-p2)"/></svg>'
    )


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
)
def test_page_renders_in_headless_chromium(cli, results, tmp_path):
    """The page of a real run, in a real browser: no console error, the sort script ran, and a
    screenshot of the expected size that is not blank."""
    import numpy as np
    from matplotlib import image

    browser = _chromium()
    assert browser, "CI is set but chromium is not installed (.ci/run installs it)"
    _page(cli, tmp_path, results / "optimizers.jsonl", results / "lr-sensitivity.jsonl")
    page = tmp_path / "report.html"
    shot = tmp_path / "shot.png"
    base = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    run = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    flat = pixels[..., :3].reshape(-1, 3)
    assert len(np.unique(flat[::97], axis=0)) > 20  # text, tables and coloured curves, not one colour
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and 'tabindex="0"' in dom.stdout  # the sort script attached its handlers
    assert not [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    with contextlib.suppress(OSError):  # keep the latest screenshot for the README (docs/report.png)
        target = os.environ.get("DNNBENCH_SCREENSHOT")
        if target:
            shutil.copy(shot, target)
