"""Helpers for running the shipped bundle configs on tiny sizes (the configs themselves are not
changed: only sizes, epochs and paths are overridden)."""

from __future__ import annotations

import os
import shutil
import tempfile

from .conftest import REPO

SCHEMA = REPO / "tests" / "data" / "meta_schema_20240725.json"


def config(bundle: str, *names: str) -> list:
    return [str(REPO / "bundles" / bundle / "configs" / f"{n}.json") for n in names]


def workflow(bundle: str, names, workflow_type: str, **overrides):
    from monai.bundle import ConfigWorkflow

    files = config(bundle, *names)
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(REPO / "bundles" / bundle / "configs" / "metadata.json"),
        logging_file=str(REPO / "bundles" / bundle / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )


def run_workflow(bundle: str, names, workflow_type: str, root, **overrides):
    """Run a bundle's configs ``names`` with ``bundle_root`` ``root``, its required properties
    checked first; returns the finished workflow."""
    wf = workflow(bundle, names, workflow_type, bundle_root=str(root), **overrides)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return wf


def verify_metadata(bundle: str) -> None:
    """``monai.bundle verify_metadata`` offline (raises ValueError naming the failed field): the
    schema copy is placed where MONAI would download it, so no download happens. In-process, the
    function the CLI calls: a subprocess would only add MONAI's import time to CI."""
    from monai.bundle import verify_metadata as monai_verify_metadata

    with tempfile.TemporaryDirectory() as tmp:
        schema = os.path.join(tmp, "schema.json")
        shutil.copy(SCHEMA, schema)
        monai_verify_metadata(meta_file=str(REPO / "bundles" / bundle / "configs" / "metadata.json"), filepath=schema)
