"""The benchmark's GC probe: a probed child records its collections; the summary names them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from bench.rig import GC_PROBE_ENV, Rig, gc_pauses, stalls_during


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


def test_a_probed_child_records_its_event_loop_held_as_a_stall(tmp_path: Path) -> None:
    # The loop is held for 100 ms by a blocking call: the probe's 10 ms tick wakes at least
    # 80 ms late whatever the machine's load (a loaded machine only makes it later).
    rig = Rig(tmp_path)
    env = rig.env({GC_PROBE_ENV: str(tmp_path)})
    code = (
        "import asyncio, time\n"
        "async def main():\n"
        "    await asyncio.sleep(0.05)\n"
        "    time.sleep(0.1)\n"
        "    await asyncio.sleep(0.05)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    (path,) = tmp_path.glob("gc-*.json")
    data = orjson.loads(path.read_bytes())
    lags = [took for kind, _, took in data["stalls"] if kind == "lag"]
    assert lags and max(lags) >= 80_000_000, data["stalls"]
    assert data["loop"]["max_ms"] >= 80, data["loop"]
    assert data["cpu_s"] > 0
    assert data["tracked"]["total"] > 0
    assert "loop lag p99" in gc_pauses(tmp_path)


def test_slow_orders_are_set_against_the_stalls_that_overlap_them(tmp_path: Path) -> None:
    stalls = {
        "gc-1.json": (["-m", "tickpipe.mock_ws"], [["gc2", 100, 30], ["lag", 500, 10]]),
        "gc-2.json": (["-m", "tickpipe.ingestor"], [["lag", 120, 5]]),
    }
    for name, (argv, found) in stalls.items():
        data = {"argv": argv, "generations": [], "stalls": found}
        (tmp_path / name).write_bytes(orjson.dumps(data))
    # the first order overlaps the mock's collection and the ingestor's lag; the second the
    # mock's lag; the third nothing
    summary = stalls_during(tmp_path, [(110, 125), (505, 600), (700, 800)])
    assert summary.startswith("2 of 3 overlap a stall: ")
    assert "mock_ws gc2 1" in summary and "ingestor lag 1" in summary
    assert "mock_ws lag 1" in summary
    assert stalls_during(tmp_path, []) == "no slow orders"
