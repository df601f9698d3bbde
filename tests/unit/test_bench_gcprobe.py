"""The benchmark's GC probe: a probed child records its collections; the summary names them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from bench.rig import GC_PROBE_ENV, Rig, gc_pauses


def test_a_probed_child_records_its_collections_per_generation(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    env = rig.env({GC_PROBE_ENV: str(tmp_path)})
    code = "import gc\nfor _ in range(3): gc.collect()\ngc.collect(0)\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    files = list(tmp_path.glob("gc-*.json"))
    assert len(files) == 1
    gens = orjson.loads(files[0].read_bytes())["generations"]
    # three explicit full collections (and maybe automatic ones), at least one young one
    assert gens[2]["collections"] >= 3, gens
    assert gens[0]["collections"] >= 1, gens
    assert gc_pauses(tmp_path).startswith(f"{files[0].stem}: g0 {gens[0]['collections']}x max")


def test_an_unprobed_child_writes_nothing(tmp_path: Path) -> None:
    env = Rig(tmp_path).env()
    subprocess.run([sys.executable, "-c", "import gc; gc.collect()"], env=env, check=True)
    assert list(tmp_path.glob("gc-*.json")) == []
    assert gc_pauses(tmp_path) == "no probe output"
