"""A Cloud Run job for the emulator whose task notes what it was started with: a stand-in
for a project's container, for the tests of the emulator and of the package's calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django_q_cloudtasks.emulator.jobs import JobRecord

# The task's program: notes its environment in one line of JSON, then does as told by it.
PROGRAM = """
import json, os, signal, sys, time
keys = sorted(k for k in os.environ if k.startswith(("CLOUD_RUN_", "DJANGO_Q_CLOUDTASKS_", "GIVEN")))
with open(os.environ["NOTES"], "a") as notes:
    notes.write(json.dumps({"argv": sys.argv[1:], **{k: os.environ.get(k) for k in keys}}) + "\\n")
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: (open(os.environ["NOTES"] + ".term", "a").write("t"), sys.exit(143)))
print("hello from the task", flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
fail_until = int(os.environ.get("FAIL_UNTIL_ATTEMPT", "0"))
sys.exit(3 if int(os.environ["CLOUD_RUN_TASK_ATTEMPT"]) < fail_until else 0)
"""


def noting_job(name: str, directory: Path, notes: Path, **fields: Any) -> JobRecord:
    """The job ``name``, whose tasks note their environment in ``notes``."""
    program = directory / "program.py"
    program.write_text(PROGRAM)
    return JobRecord(name, [sys.executable, str(program)], env={"NOTES": str(notes)}, **fields)


def runs(notes: Path) -> list[dict[str, Any]]:
    """What each run of the job's task noted, in order."""
    return [json.loads(line) for line in notes.read_text().splitlines()] if notes.exists() else []
