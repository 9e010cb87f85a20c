"""The documented command lines, run as users run them (subprocess, tiny sizes)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from angiokit.data import read_angiogram

from .conftest import REPO


def run(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_synth_png_set_with_datalist(tmp_path):
    out = tmp_path / "s"
    run("apps.synth", "--out", str(out), "--n", "8", "--size", "96", "--workers", "1")
    dl = json.load(open(out / "datalist.json"))
    entries = dl["training"] + dl["validation"] + dl["test"]
    assert len(entries) == 8 and dl["validation"] and dl["test"]
    assert len(list((out / "images").glob("*.png"))) == 8 and len(list((out / "labels").glob("*.png"))) == 8
    e = entries[0]
    image, label = read_angiogram(out / e["image"]).frames, read_angiogram(out / e["label"]).frames
    assert image.shape == label.shape == (1, 96, 96)
    assert set(np.unique(label)) <= {0.0, 255.0} and label.max() == 255
    # same command, same seed -> same files
    again = tmp_path / "again"
    run("apps.synth", "--out", str(again), "--n", "8", "--size", "96", "--workers", "2")
    assert (again / "images" / "synth_00005.png").read_bytes() == (out / "images" / "synth_00005.png").read_bytes()


def test_synth_dicom_cines_and_nifti(tmp_path):
    import pydicom

    run("apps.synth", "--out", str(tmp_path / "d"), "--n", "2", "--size", "64", "--format", "dicom", "--frames", "12", "--workers", "1")
    files = sorted((tmp_path / "d" / "images").glob("*.dcm"))
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "XA" and int(ds.NumberOfFrames) == 12
    label = read_angiogram(tmp_path / "d" / "labels" / (files[0].name.replace(".dcm", ".nii.gz")))
    assert label.frames.shape == (12, 64, 64)
    run("apps.synth", "--out", str(tmp_path / "n"), "--n", "2", "--size", "64", "--format", "nifti", "--bits", "16", "--workers", "1")
    img = read_angiogram(next((tmp_path / "n" / "images").glob("*.nii.gz")))
    assert img.meta["dtype"] == "uint16" and img.frames.max() > 255


def test_synth_preview_and_stats(tmp_path):
    real = tmp_path / "real"
    run("apps.synth", "--out", str(real), "--n", "3", "--size", "64", "--workers", "1")
    run("apps.synth", "--preview", str(tmp_path / "p.png"), "--stats", str(tmp_path / "st.md"), "--n", "4", "--size", "64",
        "--real", f"{real / 'images'}:{real / 'labels'}")
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size[0] > 300
    rows = {line.split("|")[1].strip(): line for line in (tmp_path / "st.md").read_text().splitlines()[2:]}
    assert set(rows) == {"synthetic (seed 0, 64 px)", "real: real"}
    assert rows["real: real"].rstrip(" |").split("|")[-1].strip() != "-"  # vessel area from the masks
    assert (tmp_path / "st_histogram.png").exists()


def test_synth_without_a_task_explains_itself():
    proc = subprocess.run([sys.executable, "-m", "apps.synth"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "--out" in (proc.stdout + proc.stderr)


def test_bench_synth_prints_its_headline_last():
    out = run("apps.bench", "synth", "--size", "64", "--images", "2", "--scenes", "1")
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[-1].startswith("synth_images_per_s=") and float(lines[-1].split("=")[1]) > 0
    assert any(line.startswith("raster_speedup_vs_edt=") for line in lines)


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = "python -m pytest -q tests"
    assert command in readme and command in ci


def test_prepare_priors_and_classical_baseline(tmp_path):
    data = tmp_path / "s"
    run("apps.synth", "--out", str(data), "--n", "6", "--size", "96", "--workers", "1")
    run("apps.prepare", "priors", str(data / "datalist.json"))
    doc = json.load(open(data / "datalist_priors.json"))
    prior = read_angiogram(data / doc["training"][0]["prior"]).frames
    assert set(np.unique(prior)) == {0.0, 255.0}  # the official binary prior
    run("apps.prepare", "priors", str(data / "images"), str(tmp_path / "images_frangi"), "--workers", "2")
    assert sorted(p.name for p in (tmp_path / "images_frangi").glob("*.png")) == sorted(p.name for p in (data / "images").glob("*.png"))
    out = run("apps.classical", "--datalist", str(data / "datalist.json"), "--threshold", "tuned", "--csv", str(tmp_path / "rows.csv"))
    last = out.strip().splitlines()[-1]
    assert last.startswith("dice=") and 0.1 < float(last.split()[0].split("=")[1]) < 1.0
    assert (tmp_path / "rows.csv").read_text().startswith("image,dice,cldice")


def test_prepare_pairs_cli(tmp_path):
    run("apps.synth", "--out", str(tmp_path / "s"), "--n", "3", "--size", "64", "--workers", "1")
    run("apps.prepare", "pairs", "--images", str(tmp_path / "s" / "images"), "--masks", str(tmp_path / "s" / "labels"), "--out", str(tmp_path / "p"))
    doc = json.load(open(tmp_path / "p" / "datalist.json"))
    assert sum(len(doc[k]) for k in ("training", "validation", "test")) == 3


def test_bench_prior_prints_its_headline_last():
    out = run("apps.bench", "prior", "--size", "64", "--images", "2")
    lines = out.strip().splitlines()
    assert lines[-1].startswith("prior_speedup_vs_skimage=") and float(lines[-1].split("=")[1]) > 0
    assert any(line.startswith("agreement_pearson_min=") for line in lines)


def test_steps_rerun_a_step_that_wrote_its_output_but_failed(tmp_path):
    """A training step writes its checkpoint before it ends; an interrupted one must run again."""
    from apps.experiment import Experiment

    output = tmp_path / "model.pt"
    failing = [sys.executable, "-c", f"open({str(output)!r}, 'w').write('partial'); raise SystemExit(1)"]
    steps = Experiment(str(tmp_path / "run"))
    with pytest.raises(RuntimeError, match="command failed"):
        steps.run("train", str(output), failing)
    assert output.exists()
    succeeding = [sys.executable, "-c", f"open({str(output)!r}, 'w').write('final')"]
    steps.run("train", str(output), succeeding)
    assert output.read_text() == "final" and "train" in steps.timings
    again = Experiment(str(tmp_path / "run"))
    again.run("train", str(output), failing)  # finished before: not run, so it cannot fail
    assert output.read_text() == "final" and again.timings == {}


def test_links_in_readme_and_docs_point_at_files_that_exist():
    import re

    pages = [REPO / "README.md", REPO / "monailabel_app" / "README.md"] + sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "bundles").glob("*/docs/README.md"))
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_documented_server_commands_survive_the_monailabel_script():
    """The ``monailabel`` script re-splits its arguments (``exec python -m monailabel.main $*``):
    a documented ``monailabel start_server`` whose --conf value holds a space would fail with
    "unrecognized arguments" (JSON options are given as files)."""
    import re
    import shlex

    pages = [REPO / "README.md", REPO / "monailabel_app" / "README.md"] + sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "bundles").glob("*/docs/README.md"))
    commands = []
    for page in pages:
        text = page.read_text().replace("\\\n", " ")  # continued lines
        commands += [(page.name, line) for line in text.splitlines() if re.match(r"\s*monailabel start_server", line)]
    assert len(commands) >= 5, commands
    for page, line in commands:
        args = shlex.split(line.split("#")[0])
        assert [a for a in args if " " in a or "\t" in a] == [], (page, line)
