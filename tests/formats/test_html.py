"""The HTML report: well-formed, self-contained, escaped, complete, robust, and clean in a
real browser.

The page is written to be well-formed XML, so the tests parse it with ElementTree and
walk every element and attribute. The browser tests drive Debian's headless chromium
(marked `browser`, skipped where it is not installed).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html import escape, unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rendering import exit_line, render
from safetensors.numpy import save_file
from zoo import SAMPLES

from bnstat.analysis import analyze
from bnstat.formats import InspectFormat
from bnstat.report.inspection import Report
from bnstat.report.severity import Severity
from bnstat.settings import Settings

DOCTYPE = "<!DOCTYPE html>\n"
GEOMETRY = {"x", "y", "x1", "x2", "y1", "y2", "width", "height", "d", "viewBox", "stroke-width",
            "rx"}  # fmt: skip
EMBEDDING = {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "base"}
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)  # fmt: skip


def report_of(*paths: Path) -> Report:
    return analyze(list(paths), Settings())


def parse(page: str) -> ET.Element:
    assert page.startswith(DOCTYPE)
    return ET.fromstring(page.removeprefix(DOCTYPE))


def by_class(root: ET.Element, tag: str, css: str) -> list[ET.Element]:
    return [e for e in root.iter(tag) if css in e.get("class", "").split()]


def bn_layer(prefix: str, var: list[float], mean: list[float] | None = None,
             weight: list[float] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """The tensors of one float64 BatchNorm layer with `len(var)` channels."""
    n = len(var)
    return {
        f"{prefix}.running_var": np.array(var, dtype=np.float64),
        f"{prefix}.running_mean": np.array(mean if mean is not None else [0.1] * n),
        f"{prefix}.weight": np.array(weight if weight is not None else [1.0] * n),
        f"{prefix}.bias": np.zeros(n),
        f"{prefix}.num_batches_tracked": np.array(100, dtype=np.int64),
    }


@pytest.fixture(scope="module")
def samples() -> Report:
    """Every planted defect, a healthy model, a file with two models, one without
    BatchNorm and the unreadable files."""
    paths = [
        *sorted(SAMPLES.glob("bn0*")),
        SAMPLES / "healthy.pt",
        SAMPLES / "ema_stale.pt",
        SAMPLES / "no_batchnorm.safetensors",
        *sorted((SAMPLES / "unreadable").iterdir()),
    ]
    return report_of(*paths)


@pytest.fixture(scope="module")
def samples_page(samples: Report) -> str:
    return render(samples, InspectFormat.HTML)


def test_the_page_is_well_formed_with_a_summary_and_a_section_per_checkpoint(
    samples: Report, samples_page: str
) -> None:
    root = parse(samples_page)
    assert root.tag == "html"
    assert len(root.findall(".//table[@class='summary']/tbody/tr")) == len(samples.checkpoints)
    sections = by_class(root, "details", "ckpt")
    assert [s.get("id") for s in sections] == [f"ck{i}" for i in range(len(samples.checkpoints))]
    assert escape(exit_line(samples)) in samples_page
    assert exit_line(samples).startswith("exit 2")  # the unreadable files


def test_the_banner_gives_the_unreadable_count_and_the_failing_findings(
    samples: Report, samples_page: str
) -> None:
    unreadable = sum(1 for c in samples.checkpoints if c.error is not None)
    reason = exit_line(samples)
    assert reason.startswith(f"exit 2: {unreadable} inputs could not be read; ")
    assert reason.endswith(" at or above --fail-on error")
    root = parse(samples_page)
    assert by_class(root, "p", "verdict")[0].text == exit_line(samples)


def test_the_summary_lists_the_worst_first_and_why_a_file_was_unreadable(
    samples: Report, samples_page: str
) -> None:
    rows = parse(samples_page).findall(".//table[@class='summary']/tbody/tr")
    order = [int(row.find("td/a").get("href").removeprefix("#ck")) for row in rows]
    entries = [samples.checkpoints[i] for i in order]
    unreadable = [e for e in entries if e.error is not None]
    assert entries[: len(unreadable)] == unreadable  # unreadable files first, in input order
    counts = [[sum(f.severity is s for f in e.findings) for s in reversed(Severity)]
              for e in entries[len(unreadable):]]  # fmt: skip
    assert counts == sorted(counts, reverse=True) and counts[0][0] > 0 and counts[-1] == [0, 0, 0]
    for row, entry in zip(rows, unreadable, strict=False):
        assert "".join(row.itertext()).endswith(f"could not be read: {entry.error.message}")


def test_the_page_is_self_contained(samples_page: str) -> None:
    root = parse(samples_page)
    assert "http://" not in samples_page and "https://" not in samples_page
    for element in root.iter():
        assert element.tag not in EMBEDDING
        assert "src" not in element.attrib
        assert element.get("href", "#").startswith("#")
        assert not [name for name in element.attrib if name.startswith("on")]
    style = "".join(e.text or "" for e in root.iter("style"))
    assert "url(" not in style and "@import" not in style and "@font-face" not in style


def test_every_finding_shows_its_rule_message_and_fix(samples: Report, samples_page: str) -> None:
    assert len(samples.findings) >= 10
    for finding in samples.findings:
        card = f"<b>{finding.rule}</b> {finding.name}"
        assert card in samples_page
        assert escape(finding.message) in samples_page
        assert f"<b>Fix:</b> {escape(finding.fix)}" in samples_page


def test_unreadable_files_show_their_error_and_no_batchnorm_shows_bn013(samples: Report) -> None:
    page = render(samples, InspectFormat.HTML)
    for entry in samples.checkpoints:
        if entry.error is not None:
            assert escape(entry.error.message) in page
    empty = next(c for c in samples.checkpoints if c.path.endswith("no_batchnorm.safetensors"))
    section = parse(page).find(f".//details[@id='ck{samples.checkpoints.index(empty)}']")
    assert section is not None
    assert not by_class(section, "table", "overview")
    assert "BN013" in "".join(section.itertext())


def test_dead_channels_are_marked_in_their_layer() -> None:
    root = parse(render(report_of(SAMPLES / "bn004_dead_channel.pt"), InspectFormat.HTML))
    layers = {e.findtext("summary/code"): e for e in by_class(root, "details", "layer")}
    dead = layers["block1.bn1"]
    assert dead.get("open") is not None  # layers with findings start open
    assert by_class(dead, "path", "dead")
    assert "dead [0, 1]" in "".join(dead.itertext())
    assert layers["stem.bn"].get("open") is None and not by_class(layers["stem.bn"], "path", "dead")


def test_hostile_names_render_as_text(tmp_path: Path) -> None:
    names = ["<script>alert(1)</script>", "x' onmouseover='alert(2)", 'q" onclick="alert(3)']
    tensors: dict[str, np.ndarray] = {}
    for name in names:
        tensors |= bn_layer(name, [1.0, 2.0, 3.0], weight=[0.0, 1.0, 1.0])  # BN004 on each
    path = tmp_path / "<img src=x onerror=alert(4)>.safetensors"
    save_file(tensors, str(path))
    report = report_of(path)
    assert {layer.name for layer in report.checkpoints[0].layers} == set(names)
    page = render(report, InspectFormat.HTML)
    root = parse(page)
    for element in root.iter():
        assert element.tag not in EMBEDDING
        assert not [a for a in element.attrib if a.startswith("on")]
    text = "".join(root.itertext())
    for name in [*names, path.name]:
        assert name in text
    assert "&lt;script&gt;" in page


def test_long_names_show_their_end_in_the_overview_and_whole_elsewhere(tmp_path: Path) -> None:
    names = [f"encoder.backbone.feature_pyramid.stage_four.block_{i}.norm" for i in (1, 2)]
    path = tmp_path / "long.safetensors"
    save_file(bn_layer(names[0], [1.0, 2.0]) | bn_layer(names[1], [1.0, 3.0]), str(path))
    root = parse(render(report_of(path), InspectFormat.HTML))
    links = root.findall(".//table[@class='overview']/tbody/tr/td/a")
    assert [a.get("title") for a in links] == names
    shown = [a.findtext("code") or "" for a in links]
    assert all(s.startswith("…") and n.endswith(s[1:]) for s, n in zip(shown, names, strict=True))
    assert len(set(shown)) == 2 and max(len(s) for s in shown) <= 28
    layers = [e.findtext("summary/code") for e in by_class(root, "details", "layer")]
    assert layers == names


def test_non_finite_and_extreme_values_keep_every_coordinate_finite(tmp_path: Path) -> None:
    nan, inf = math.nan, math.inf
    tensors = (
        bn_layer("all_nan", [nan, nan, nan], mean=[nan, nan, nan], weight=[nan, nan, nan])
        | bn_layer("mixed", [nan, inf, -1.0, 0.0, 2.0], mean=[inf, -inf, nan, 0.5, 1.0])
        | bn_layer("huge", [1e300, 1e-300, 1.0], mean=[1e300, -1e300, 0.0], weight=[1e300, 0, 1])
        | bn_layer("constant", [1.0] * 4, mean=[0.0] * 4, weight=[0.0] * 4)
        | bn_layer("single", [0.5])
    )
    path = tmp_path / "broken.safetensors"
    save_file(tensors, str(path))
    page = render(report_of(path), InspectFormat.HTML)
    root = parse(page)
    pictures = [e for svg in root.iter("svg") for e in svg.iter()]
    assert len(pictures) > 50
    for element in pictures:
        for name, value in element.attrib.items():
            if name in GEOMETRY:
                numbers = re.findall(r"[-+]?[0-9.]+(?:e[-+]?\d+)?|nan|inf", value, re.IGNORECASE)
                assert all(math.isfinite(float(n)) for n in numbers), (name, value)
    assert "not drawn" in page and "nothing to draw" in page


def synthetic_model(path: Path, layers: int = 200) -> None:
    """A big model: 64 to 2048 channels per layer, a few dead channels and one outlier."""
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {}
    for i in range(layers):
        channels = (64, 128, 256, 512, 1024, 2048)[i % 6]
        prefix = f"backbone.stage{i // 50}.block{i % 50}.bn"
        var = rng.lognormal(np.log(0.5), 0.8, channels) * (1e5 if i == 120 else 1.0)
        weight = rng.normal(1, 0.1, channels)
        if i % 17 == 3:
            weight[:5] = 0.0
        tensors |= bn_layer(prefix, var.tolist(), rng.normal(0, 0.5, channels).tolist(),
                            weight.tolist())  # fmt: skip
    save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(path))


def test_a_200_layer_model_stays_small_and_collapsed(tmp_path: Path) -> None:
    synthetic_model(tmp_path / "big.safetensors")
    report = report_of(tmp_path / "big.safetensors")
    page = render(report, InspectFormat.HTML)
    assert len(page.encode()) < 3_000_000
    root = parse(page)
    assert len(root.findall(".//table[@class='overview']/tbody/tr")) == 200
    layers = by_class(root, "details", "layer")
    opened = [e for e in layers if e.get("open") is not None]
    flagged = {f.layer for f in report.findings}
    assert len(layers) == 200 and 0 < len(opened) == len(flagged) < 20


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def console_lines(chromium: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after load, and the console messages the page produced."""
    result = run_chromium(
        chromium, profile, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()
    )
    return result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.browser
@pytest.mark.slow
def test_the_console_check_sees_errors(chromium: str, tmp_path: Path) -> None:
    """The control: a page whose script throws must be caught by `console_lines`."""
    broken = write(tmp_path / "broken.html", "<!DOCTYPE html><p>x</p><script>no_such()</script>")
    _, lines = console_lines(chromium, broken, tmp_path / "profile")
    assert any("Uncaught ReferenceError" in line for line in lines)


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_loads_in_chromium_without_console_messages(
    chromium: str, samples_page: str, tmp_path: Path
) -> None:
    page = write(tmp_path / "samples.html", samples_page)
    dom, lines = console_lines(chromium, page, tmp_path / "profile")
    assert lines == []
    assert '<table class="overview">' in dom


LAYOUT_CHECK = """addEventListener("load", () => {
  const win = document.getElementById("page").contentWindow, doc = win.document;
  const shown = e => e.getClientRects().length > 0;
  const near = (a, b) => a.left < b.right + 20 && b.left < a.right + 20 &&
    a.top < b.bottom && b.top < a.bottom;
  const check = {width: win.innerWidth, overflow: doc.documentElement.scrollWidth - win.innerWidth,
    crowded: [], clipped: [], plots: []};
  for (const head of doc.querySelectorAll("table.overview thead")) {
    const labels = [...head.querySelectorAll("svg.axis text")].filter(shown).map(
      t => [t.textContent, t.getBoundingClientRect(), t.closest("svg").getBoundingClientRect()]);
    for (const [text, box, svg] of labels) {
      if (box.left < svg.left - 0.5 || box.right > svg.right + 0.5) check.clipped.push(text);
    }
    labels.forEach(([a, boxA], i) => labels.slice(i + 1).forEach(([b, boxB]) => {
      if (near(boxA, boxB)) check.crowded.push(a + " | " + b);
    }));
  }
  for (const cell of doc.querySelectorAll("table.overview td.plot")) {
    if (shown(cell)) check.plots.push(cell.getBoundingClientRect().width);
  }
  document.body.setAttribute("data-check", JSON.stringify(check));
});"""


def layout(chromium: str, page: str, width: int, folder: Path) -> dict[str, Any]:
    """What the page measures of itself in a frame `width` pixels wide (a headless
    window cannot be narrower than 500 pixels; a frame can, media queries included)."""
    probe = write(
        folder / f"probe{width}.html",
        f"<!DOCTYPE html><body style='margin:0'><iframe id='page' srcdoc=\"{escape(page)}\" "
        f"style='border:0;width:{width}px;height:1000px'></iframe>"
        f"<script>{LAYOUT_CHECK}</script></body>",
    )
    dom = run_chromium(chromium, folder / "profile", "--window-size=1500,1100", "--dump-dom",
                       probe.as_uri()).stdout  # fmt: skip
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, dom[-2000:]
    check: dict[str, Any] = json.loads(unescape(found.group(1)))
    return check


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("width", [390, 700, 1400])
def test_the_page_fits_the_window_and_no_axis_labels_collide(
    chromium: str, samples_page: str, tmp_path: Path, width: int
) -> None:
    """A phone, half a laptop screen, a whole one: nothing wider than the window, axis
    labels apart and inside their axis, every overview plot wide enough to read."""
    check = layout(chromium, samples_page, width, tmp_path)
    assert abs(check["width"] - width) <= 20, check
    assert check["overflow"] <= 0, check
    assert check["crowded"] == [] and check["clipped"] == [], check
    assert check["plots"] and min(check["plots"]) >= 100, check
    if width >= 1400:
        assert min(check["plots"]) >= 300, check


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("width", [700, 1400])
def test_screenshots_show_the_overview(
    chromium: str, tmp_path: Path, width: int, record_property: Callable[[str, object], None]
) -> None:
    """Screenshots at 700 and 1400 pixels, kept in the test's folder (named in the JUnit
    properties and the captured output), with the bands of both checkpoints drawn."""
    image = pytest.importorskip("PIL.Image")
    report = report_of(SAMPLES / "bn004_dead_channel.pt", SAMPLES / "healthy.pt")
    page = write(tmp_path / "report.html", render(report, InspectFormat.HTML))
    shot = tmp_path / f"report-{width}px.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={shot}",
                 f"--window-size={width},1000", page.as_uri())  # fmt: skip
    record_property(f"screenshot-{width}", str(shot))
    print(f"screenshot: {shot}")
    pixels = np.asarray(image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[1] == width

    def count(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= 3).sum())

    assert count((159, 179, 200)) > 1500  # the healthy layers' bands
    assert count((225, 145, 51)) > 150  # block1.bn1's band, coloured by its warning
