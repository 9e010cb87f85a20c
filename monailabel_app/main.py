"""MONAI Label app: the vessel segmenter, the CAS-IQA quality scorer and the stenosis detector of
this repository for 3D Slicer and OHIF, with active learning on angiograms.

    monailabel start_server --app monailabel_app --studies DIR --conf models vessel_seg,quality

``--studies`` is a folder of PNG / JPEG / DICOM XA / NIfTI angiograms or a DICOMweb URL (e.g.
``http://127.0.0.1:8042/dicom-web``). Models: ``vessel_seg``, ``quality``, ``stenosis_det`` or
``all`` (default: the first two, and ``stenosis_det`` once it has a trained detector, i.e. with
``--conf stenosis_det_checkpoint PATH``).
Their options are in ``lib/configs``; ``--conf model_dir DIR`` is where the working copies of
the bundles and their weights live (default: ``model/`` in this folder). See
docs/annotation.md.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Dict

from fastapi import HTTPException
from lib.apidocs import serve_api_page_offline
from lib.configs import ALL_WHEN, CONFIGS
from lib.datastore import EXTENSIONS, AngioDatastore
from lib.dicomweb import angio_dicomweb_datastore
from lib.serving import image_to_infer, infer_off_the_event_loop
from lib.temporaries import clean_up_after_requests, remove_start_log_config
from lib.training import exit_with_server
from lib.viewer import serve_xa_page
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.tasks.activelearning.random import Random

import angiokit

logger = logging.getLogger(__name__)


def selected_models(conf: Dict[str, str], model_dir: str = "") -> list:
    names = [m.strip() for m in conf.get("models", "all").split(",") if m.strip()]
    if not names or "all" in names:  # those of ALL_WHEN once they have something to serve
        return [m for m in CONFIGS if m not in ALL_WHEN or ALL_WHEN[m](model_dir, conf)]
    unknown = [m for m in names if m not in CONFIGS]
    if unknown:
        raise ValueError(f"--conf models: unknown model(s) {unknown}; available: all, {', '.join(CONFIGS)}")
    return names


class AngioApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        exit_with_server()  # a training or scoring task process ends with its server (no-op in the server)
        self.model_dir = conf.get("model_dir") or os.path.join(app_dir, "model")
        self.models: Dict[str, TaskConfig] = {}
        for name in selected_models(conf, self.model_dir):
            self.models[name] = CONFIGS[name]()
            self.models[name].init(name, self.model_dir, conf, None)
        logger.info(f"+++ Using models: {list(self.models)}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="angiokit - X-ray coronary angiography",
            description="Vessel segmentation of frames and cines, CAS-IQA quality scores of synthetic angiograms, active learning",
            version=angiokit.__version__,
        )
        if "monailabel.app" in sys.modules:  # in the server (not in a training or scoring subprocess)
            infer_off_the_event_loop()
            clean_up_after_requests()  # no temp file left by a failed upload or a dataset download
            remove_start_log_config()
            serve_api_page_offline()  # / and /docs without scripts from a CDN
            serve_xa_page()  # the XA annotation page at /xa/ (web/xa_annotator)

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            self.studies = self.studies.rstrip("/").strip()
            return angio_dicomweb_datastore(self.studies)
        return AngioDatastore(self.studies, extensions=EXTENSIONS, auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD, read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def infer(self, request, datastore=None):
        """MONAI Label's, on a study id or a file the endpoint made only (``lib/serving.py``)."""
        model = request.get("model")
        if model in ALL_WHEN and model not in self._infers:  # left out of "all": a 503 that says why
            raise HTTPException(status_code=503, detail=f"{model} is not served: {CONFIGS[model].NOT_SERVING}")
        if isinstance(request.get("image"), str):
            study_file = image_to_infer(datastore or self.datastore(), request["image"])
            if study_file:
                request = {**request, "image": study_file}
        return super().infer(request, datastore)

    def init_infers(self):
        return {k: v for config in self.models.values() for k, v in config.infer().items()}

    def init_trainers(self):
        trainers = {name: config.trainer() for name, config in self.models.items()}
        return {name: trainer for name, trainer in trainers.items() if trainer is not None}  # stenosis_det: none

    def init_strategies(self):
        strategies = {"random": Random()}
        for config in self.models.values():
            strategies.update(config.strategy())
        return strategies

    def init_scoring_methods(self):
        return {k: v for config in self.models.values() for k, v in config.scoring_method().items()}
