"""The shard backends: helper processes never outlive the dance-gen that started them."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

DANCE_GEN = Path(sys.executable).with_name("dance-gen")


def session_members(session: int) -> list[int]:
    """Pids of the live (not zombie) processes of a session, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        state, _, _, sid = stat[stat.rindex(")") + 2:].split()[:4]
        if int(sid) == session and state != "Z":
            members.append(int(entry.name))
    return members


def test_pool_workers_forkserver_and_tracker_die_with_a_driver_killed_by_sigkill(tmp_path):
    out = tmp_path / "data"
    command = [str(DANCE_GEN) if DANCE_GEN.exists() else shutil.which("dance-gen"), "space=small",
               "layers.input_sizes=[32]", "n_samples=4000", "shard_rows=40", "workers=2", "progress=false",
               f"out={out}"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("part-*.parquet"))) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, "dance-gen ended before it could be killed"
            time.sleep(0.02)
        helpers = [pid for pid in session_members(driver.pid) if pid != driver.pid]
        assert len(helpers) >= 3  # forkserver, resource tracker and the workers at least
        driver.kill()  # SIGKILL to the driver alone: no chance to clean up
        driver.wait()
        deadline = time.monotonic() + 10
        while session_members(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_members(driver.pid) == []
    finally:
        for pid in session_members(driver.pid):  # leave nothing running if the test fails
            os.kill(pid, signal.SIGKILL)
