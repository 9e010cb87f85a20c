"""Generate a synthetic X-ray angiogram set, or a preview figure of one.

    python -m apps.synth --out DIR --n 200 --size 512 --seed 0            # PNG + datalist.json
    python -m apps.synth --out DIR --n 20 --format dicom --frames 12      # multi-frame DICOM XA
    python -m apps.synth --out DIR --n 20 --format nifti
    python -m apps.synth --preview docs/synthetic_preview.png --real DIR1,DIR2
    python -m apps.synth --stats runs/synthetic_stats.md --n 40 --real IMAGES:MASKS,DIR2
    python -m apps.synth --out DIR --guidewire_probability 1.0           # any SynthConfig field

Vessel masks: PNG labels hold 0/255 (the XCAD / ARCADE convention); NIfTI labels hold 0/1.
"""

from __future__ import annotations

import os

import fire

from angiokit.data.synthetic import default_config
from angiokit.data.synthetic.export import write_synthetic_dataset
from angiokit.data.synthetic.preview import preview_figure
from angiokit.data.synthetic.stats import compare_with_real


def main(
    out: str = None,
    n: int = 200,
    size: int = 512,
    seed: int = 0,
    format: str = "png",  # noqa: A002 - the documented flag name
    frames: int = 1,
    bits: int = 8,
    preview: str = None,
    stats: str = None,
    real=(),
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    workers: int = min(4, os.cpu_count() or 1),
    **config,
):
    """Write ``n`` samples to ``out`` and/or a preview figure to ``preview`` (PNG).

    ``stats``: markdown file for a table of image statistics, synthetic vs the ``real`` sets.
    ``real``: comma-separated folders of real angiograms for the preview and the statistics;
    ``IMAGES_DIR:MASKS_DIR`` adds vessel masks (paired by file name) to the statistics.
    Extra ``--name value`` flags set SynthConfig fields (e.g. ``--guidewire_probability 1``).
    """
    if out is None and preview is None and stats is None:
        raise SystemExit("nothing to do: give --out DIR (a data set), --preview FILE.png and/or --stats FILE.md")
    cfg = default_config(size=int(size), frames=int(frames), **config)
    still = default_config(**{**cfg.to_dict(), "frames": 1})
    real_dirs = [d for d in real.split(",") if d] if isinstance(real, str) else list(real)
    if preview is not None:
        print(f"preview written to {preview_figure(preview, n=min(int(n), 8), seed=seed, real_dirs=real_dirs, cfg=still)}")
    if stats is not None:
        print(compare_with_real(stats, real_dirs, n_synthetic=min(int(n), 100), seed=int(seed), cfg=still))
        print(f"statistics written to {stats} (histogram beside it)")
    if out is not None:
        path = write_synthetic_dataset(out, int(n), cfg, int(seed), format, int(bits), val_fraction, test_fraction, int(workers))
        print(f"datalist written to {path}")


if __name__ == "__main__":
    fire.Fire(main)
