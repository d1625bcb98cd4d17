"""The extra synthetic benchmarks: valid YOLO datasets, deterministic, labels in range, digits split by sample."""

from dataclasses import replace

import numpy as np
import pytest
from helpers import digest

from bench import synthetic
from bench.synthetic import SYNTHETIC, config_of, generate_named, resolve_data

TINY = dict(n_train=6, n_val=3)


def needs(name):
    """Skip the test when an optional package of the set `name` is missing."""
    for module, _ in SYNTHETIC[name].needs:
        pytest.importorskip(module)


@pytest.fixture(scope="module", params=list(SYNTHETIC))
def tiny(request, tmp_path_factory):
    """(name, root) of a tiny generated copy of each registered set."""
    name = request.param
    needs(name)
    return name, generate_named(name, tmp_path_factory.mktemp(name), **TINY).parent


def test_yaml_loads_and_labels_parse(tiny):
    from ultralytics.data.utils import check_det_dataset

    name, root = tiny
    spec, cfg = SYNTHETIC[name], config_of(name)
    data = check_det_dataset(str(root / "data.yaml"))
    assert data["nc"] == len(spec.names) and list(data["names"].values()) == list(spec.names)
    for split, n in (("train", 6), ("val", 3)):
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert len(labels) == n == len(list((root / "images" / split).glob("*.png")))
        for f in labels:
            rows = np.array([line.split() for line in f.read_text().splitlines()], float)
            assert cfg.objects[0] <= len(rows) <= cfg.objects[1], (f, len(rows))
            assert rows.shape[1] == (9 if spec.task == "obb" else 5)
            cls, coords = rows[:, 0], rows[:, 1:]
            assert (cls == cls.round()).all() and cls.min() >= 0 and cls.max() < len(spec.names)
            assert coords.min() >= 0 and coords.max() <= 1
            if spec.task == "obb":  # every side of every rectangle is over a pixel long
                corners = coords.reshape(-1, 4, 2) * cfg.imgsz
                sides = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=-1)
                assert sides.min() > 1
            else:
                xc, yc, w, h = coords.T
                assert min(w.min(), h.min()) * cfg.imgsz >= 2
                assert (xc - w / 2).min() >= -1e-6 and (xc + w / 2).max() <= 1 + 1e-6
                assert (yc - h / 2).min() >= -1e-6 and (yc + h / 2).max() <= 1 + 1e-6


def test_same_seed_same_files_other_seed_other_files(tiny, tmp_path):
    name, root = tiny
    assert digest(generate_named(name, tmp_path / "again", **TINY).parent) == digest(root)
    assert digest(generate_named(name, tmp_path / "other", **TINY, seed=1).parent) != digest(root)


def test_digits_train_and_val_use_different_samples(tmp_path, monkeypatch):
    needs("digits")
    train, val = synthetic.digit_bank("train"), synthetic.digit_bank("val")
    assert not set(train[2]) & set(val[2]) and len(train[2]) + len(val[2]) == 1797
    assert set(train[1]) == set(val[1]) == set(range(10))
    asked = []
    bank = synthetic.digit_bank
    monkeypatch.setattr(synthetic, "digit_bank", lambda split, *a: asked.append(split) or bank(split, *a))
    generate_named("digits", tmp_path, n_train=3, n_val=2)
    assert asked == ["train"] * 3 + ["val"] * 2  # each split's images draw from its own samples


def test_overrides_unknown_names_and_missing_packages(monkeypatch, tmp_path, capsys):
    import ultralytics.utils

    from ultrald.cli import entrypoint

    assert config_of("crowd", objects=[2, 3]).objects == (2, 3)
    with pytest.raises(ValueError, match="unknown synthetic dataset"):
        config_of("nope")
    with pytest.raises(TypeError):
        config_of("crowd", no_such_field=1)
    monkeypatch.setitem(SYNTHETIC, "crowd", replace(SYNTHETIC["crowd"], needs=(("no_such_module_xyz", "nosuch"),)))
    monkeypatch.setattr(ultralytics.utils, "DATASETS_DIR", tmp_path)
    # Python callers catch it as the ImportError it is, before anything is written
    with pytest.raises(ImportError, match=r"^data=crowd needs nosuch: pip install 'ultrald\[bench\]'$"):
        generate_named("crowd", tmp_path / "direct")
    with pytest.raises(ImportError, match="needs nosuch"):
        resolve_data("crowd")
    assert not any(tmp_path.iterdir())
    # the package knows only its own embedded set: `yolo-ld data crowd` says where the benchmark's sets are
    assert entrypoint(["data", "crowd"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the embedded datasets are ['shapes', 'shapes-obb']" in err and "python bench/synthetic.py crowd" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_resolve_data_generates_once_under_datasets_dir(tmp_path, monkeypatch):
    import ultralytics.utils

    monkeypatch.setattr(ultralytics.utils, "DATASETS_DIR", tmp_path)
    for name in "crowd-obb", "shapes":
        spec = SYNTHETIC[name]
        monkeypatch.setitem(SYNTHETIC, name, replace(spec, config=replace(spec.config, n_train=2, n_val=1)))
        yaml_file = resolve_data(name)
        assert yaml_file == str(tmp_path / f"ultrald-{name}" / "data.yaml")
        stamp = (tmp_path / f"ultrald-{name}" / "ultrald.json").stat().st_mtime_ns
        assert resolve_data(name) == yaml_file
        assert (tmp_path / f"ultrald-{name}" / "ultrald.json").stat().st_mtime_ns == stamp  # reused, not redrawn
    assert resolve_data("coco.yaml") == "coco.yaml" and resolve_data(None) is None
