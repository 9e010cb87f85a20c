"""The figure of docs/annotation.md: vessel labels as 3D Slicer / OHIF receive them, produced
through the MONAI Label app's REST API (``POST /infer/vessel_seg``) by a real server.

    python -m apps.annotation_figure --out docs/annotation_overlay.png \
        --checkpoint runs/compare/finetune/vessels_synthetic/vasomim/models/model.pt

Studies: a real XCAD test frame (its reference mask gives the Dice in the title), a real XA DICOM
cine (the label comes back for every frame; the frame of most contrast is shown) and a synthetic
frame. The server builds the network the checkpoint records (no size flags; ``--config`` only for
a checkpoint written before angiokit 0.2, with the sizes it was trained at). Without
--checkpoint it serves what its first start serves: the classical Frangi + Otsu segmenter.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Optional

import fire

from apps._server import serve_app

SHARED = os.environ.get("ANGIOKIT_SHARED_DATA", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data"))
XCAD_TEST_FRAME = "00242_44"  # of the fixed XCAD test split (../shared/data/xcad_samples/PROVENANCE.md)
REAL_CINE = "XA-MONO2-8-12x-catheter.dcm"


def _studies(folder: str, synthetic_size: int) -> dict:
    """Write the studies folder; {study id: reference mask or None}."""
    from angiokit.data import read_angiogram, to_uint, write_png
    from angiokit.data.synthetic import SynthConfig, synthesize

    os.makedirs(folder, exist_ok=True)
    references = {}
    xcad = os.path.join(SHARED, "xcad_samples")
    if os.path.isdir(xcad):
        shutil.copy(os.path.join(xcad, "images", f"{XCAD_TEST_FRAME}.png"), os.path.join(folder, f"xcad_{XCAD_TEST_FRAME}.png"))
        references[f"xcad_{XCAD_TEST_FRAME}"] = read_angiogram(os.path.join(xcad, "masks", f"{XCAD_TEST_FRAME}.png")).frames[0] > 0
    cine = os.path.join(SHARED, "dicom_xa", REAL_CINE)
    if os.path.isfile(cine):
        shutil.copy(cine, os.path.join(folder, "real_cine.dcm"))
        references["real_cine"] = None
    s = synthesize(SynthConfig(size=synthetic_size), seed=2024)
    write_png(os.path.join(folder, "synthetic.png"), to_uint(s.image, 8)[0])
    references["synthetic"] = s.vessel[0] > 0
    return references


def main(out: str = "docs/annotation_overlay.png", checkpoint: Optional[str] = None, config: Optional[str] = None, workdir: Optional[str] = None, synthetic_size: int = 512, device: str = "cpu") -> str:
    import requests

    from angiokit.data import read_angiogram
    from angiokit.data.readers import max_contrast_frame
    from angiokit.metrics import dice_score
    from angiokit.visualize import overlay, save_grid, to_display

    work = workdir or tempfile.mkdtemp(prefix="annotation_figure_")
    studies = os.path.join(work, "studies")
    references = _studies(studies, synthetic_size)
    conf = {"models": "vessel_seg", "model_dir": os.path.join(work, "model")}
    if checkpoint:
        conf["vessel_seg_checkpoint"] = os.path.abspath(checkpoint)
    if config:
        conf["vessel_seg_config"] = config if isinstance(config, str) else json.dumps(config)
    tiles, titles = [], []
    print(f"starting the MONAI Label server on {studies} ...", flush=True)
    with serve_app(work, studies, conf) as (url, log):
        print(f"serving {requests.get(f'{url}/info/').json()['models']['vessel_seg']['serving']}", flush=True)
        for i, (study, reference) in enumerate(references.items(), 1):
            start = time.time()
            r = requests.post(f"{url}/infer/vessel_seg", params={"image": study, "output": "image"}, data={"params": json.dumps({"device": device})})
            if r.status_code != 200:
                raise RuntimeError(f"/infer/vessel_seg on {study}: HTTP {r.status_code} {r.text[:500]}\n{log.read_text()[-3000:]}")
            seconds = time.time() - start
            suffix = ".nii.gz" if "nii" in r.headers.get("content-disposition", "") else ".png"
            label_file = os.path.join(work, f"{study}_label{suffix}")
            open(label_file, "wb").write(r.content)
            image = read_angiogram(next(os.path.join(studies, f) for f in os.listdir(studies) if f.startswith(study + "."))).frames
            label = read_angiogram(label_file, volume_as_frames=True).frames > 0
            if label.shape != image.shape:
                raise RuntimeError(f"{study}: label {label.shape} does not match the study {image.shape}")
            shown = max_contrast_frame(image)
            title = f"{study}: {image.shape[0]} frame(s) {image.shape[1]}x{image.shape[2]}" + (f", frame {shown}" if image.shape[0] > 1 else "")
            if reference is not None:
                title += f"\nDice vs reference {dice_score(label[shown], reference):.3f}"
            tiles += [to_display(image[shown]), overlay(image[shown], {"vessel": label[shown]})]
            titles += [title, f"label from the API ({seconds:.1f} s)"]
            print(f"[{i}/{len(references)}] {study}: label {label.shape} in {seconds:.1f} s", flush=True)
    path = save_grid(tiles, out, ncols=2, titles=titles, tile_inches=3.2, compact=True)
    print(f"figure: {path}")
    return path


if __name__ == "__main__":
    fire.Fire(main)
