import json

import pytest

from angiokit.data import assign_splits, build_datalist, write_datalist


def test_splits_are_deterministic_stable_and_complete():
    cases = [f"case{i:03d}" for i in range(200)]
    a = assign_splits(cases, 0.1, 0.1, seed=0)
    assert a == assign_splits(list(reversed(cases)), 0.1, 0.1, seed=0)
    assert set(a) == set(cases)
    counts = {s: sum(v == s for v in a.values()) for s in ("training", "validation", "test")}
    assert 10 <= counts["validation"] <= 32 and 10 <= counts["test"] <= 32
    grown = assign_splits(cases + [f"new{i}" for i in range(50)], 0.1, 0.1, seed=0)
    assert all(grown[c] == a[c] for c in cases)  # adding cases never moves old ones
    assert assign_splits(cases, 0.1, 0.1, seed=1) != a


def test_tiny_sets_still_get_validation_and_test():
    split = assign_splits(["a", "b", "c", "d"], 0.1, 0.1)
    assert sorted(split.values()).count("training") == 2
    assert {"validation", "test"} <= set(split.values())
    with pytest.raises(ValueError):
        assign_splits(["a"], 0.6, 0.5)


def test_frames_of_one_case_stay_together_and_paths_are_relative(tmp_path):
    from monai.data import load_decathlon_datalist

    items = []
    for c in range(10):
        for f in range(3):
            img = tmp_path / "images" / f"c{c}_f{f}.png"
            img.parent.mkdir(exist_ok=True)
            img.write_bytes(b"x")
            items.append({"case": f"c{c}", "image": str(img), "label": str(img), "frame": f})
    dl = build_datalist(items, str(tmp_path), 0.2, 0.2, seed=0)
    where = {}
    for split, entries in dl.items():
        for e in entries:
            assert not e["image"].startswith("/")
            where.setdefault(e["case"], set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    path = write_datalist(tmp_path / "datalist.json", dl, description="test")
    assert json.load(open(path))["description"] == "test"
    loaded = load_decathlon_datalist(path, data_list_key="training")
    assert loaded and all(str(tmp_path) in e["image"] for e in loaded)
