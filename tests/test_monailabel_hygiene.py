"""What the annotation server leaves behind (issue 30, item 6): no files in the system temp
folder once its requests are done (failed ones included), and files others of the lab can read.

One real server (``monailabel start_server``, the classical first start on a few synthetic
frames) with its own temp folder (``TMPDIR``) and umask 022, driven through a mix of the
requests the viewers make: inference on uploads and on studies in each output form, label and
image uploads, refused ones (422, 404), active learning and a dataset download."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time

import pytest

from angiokit.data import write_mask_png

from apps.bench.server import make_studies

from .conftest import running_server


requests = pytest.importorskip("requests")

CPU = json.dumps({"device": "cpu"})
UMASK = 0o022


def _temp_files(folder) -> list:
    """What ``folder`` holds, less torch's compile cache folder (``torchinductor_<user>``,
    empty): ``import monai`` makes it in every process, once, and every start reuses it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.relative_to(folder).parts[0].startswith("torchinductor_"))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """The server after its requests: {"tmp": its temp folder, "at_start": what that held once
    the server answered, "statuses": {request: HTTP status}, "studies", "model_dir"}."""
    root = tmp_path_factory.mktemp("hygiene")
    studies, tmp = root / "studies", root / "tmp"
    studies.mkdir()
    tmp.mkdir()
    truth = make_studies(studies, frames=3, size=64, cine_frames=0)
    write_mask_png(root / "label.png", truth["frame1"])
    write_mask_png(root / "small_label.png", truth["frame1"][:32, :32])
    (root / "bad.png").write_bytes(os.urandom(300))
    conf = {"models": "vessel_seg", "model_dir": str(root / "model")}
    statuses = {}

    def send(name, method, path, upload=None, field="file", **kwargs):
        if upload is not None:
            with open(upload, "rb") as f:
                r = requests.request(method, f"{url}{path}", files={field: (os.path.basename(upload), f)}, timeout=300, **kwargs)
        else:
            r = requests.request(method, f"{url}{path}", timeout=300, **kwargs)
        statuses[name] = r.status_code

    with contextlib.ExitStack() as stack:
        previous = os.umask(UMASK)  # the server's, inherited
        try:
            url, log = stack.enter_context(running_server(root / "server", studies, conf, env={"TMPDIR": str(tmp)}))
        finally:
            os.umask(previous)
        at_start = _temp_files(tmp)
        send("info", "GET", "/info/")
        for output in ("image", "json", "all"):
            send(f"infer upload {output}", "POST", "/infer/vessel_seg", studies / "frame0.png", params={"output": output}, data={"params": CPU})
            send(f"infer study {output}", "POST", "/infer/vessel_seg", params={"image": "frame0", "output": output}, data={"params": CPU})
        send("infer unreadable upload", "POST", "/infer/vessel_seg", root / "bad.png", params={"output": "image"}, data={"params": CPU})
        send("infer unknown study", "POST", "/infer/vessel_seg", params={"image": "no_such_study", "output": "image"}, data={"params": CPU})
        send("label", "PUT", "/datastore/label", root / "label.png", field="label", params={"image": "frame1", "tag": "final"})
        send("label of the wrong size", "PUT", "/datastore/label", root / "small_label.png", field="label", params={"image": "frame2", "tag": "final"})
        send("label of an unknown study", "PUT", "/datastore/label", root / "label.png", field="label", params={"image": "no_such_study", "tag": "final"})
        send("image", "PUT", "/datastore/", studies / "frame2.png", params={"image": "uploaded"})
        send("unreadable image", "PUT", "/datastore/", root / "bad.png", params={"image": "unreadable"})
        send("active learning", "POST", "/activelearning/random", json={})
        send("dataset download", "GET", "/datastore/dataset")
        # removals run after each response was sent: allow them a moment
        deadline = time.time() + 10
        while _temp_files(tmp) != at_start and time.time() < deadline:
            time.sleep(0.2)
        yield {"tmp": tmp, "at_start": at_start, "statuses": statuses, "studies": studies, "model_dir": root / "model", "log": log}


def test_the_temp_folder_holds_no_new_files_after_the_requests(traffic):
    """Nothing after the start (its logging config is gone once read) and nothing after the
    requests, the refused uploads and the dataset archive included."""
    refused = {"infer unreadable upload": 422, "infer unknown study": 404, "label of the wrong size": 422, "label of an unknown study": 404, "unreadable image": 422}
    assert traffic["statuses"] == {**{k: 200 for k in traffic["statuses"] if k not in refused}, **refused}, traffic["statuses"]
    left = _temp_files(traffic["tmp"])
    sizes = {name: (traffic["tmp"] / name).stat().st_size for name in left}
    assert left == [], f"{len(left)} files ({sum(sizes.values())} bytes) left in the temp folder: {sizes}; at the start: {traffic['at_start']}"
    assert traffic["at_start"] == []


def test_files_the_app_writes_have_the_permissions_of_the_umask(traffic):
    """The datastore file, a label, an uploaded image and the weights the first start wrote:
    0o666 less the umask (0644 under 022), readable by the lab's other accounts, not 0600."""
    studies = traffic["studies"]
    written = [studies / "datastore_v2.json", studies / "labels" / "final" / "frame1.png", studies / "uploaded.png", traffic["model_dir"] / "vessel_seg" / "models" / "model.pt"]
    modes = {p.name: oct(_mode(p)) for p in written}
    assert set(modes.values()) == {oct(0o666 & ~UMASK)}, modes
    assert not [p.name for p in studies.iterdir() if p.name.endswith(".tmp")]  # no temporary file of an atomic write left
