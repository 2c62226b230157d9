"""The same script on local kernels and on the InstaVM cloud: migrating is one import line.

    python examples/migrate_to_cloud.py                    # local kernels
    INSTAVM_API_KEY=... python examples/migrate_to_cloud.py --cloud
    INSTAVM_BASE_URL=http://127.0.0.1:8223 python examples/migrate_to_cloud.py --cloud   # a `coderunner serve`

In your own code the switch is the import alone; every call below is the InstaVM SDK's:

    from coderunner import CodeRunner                      # local kernels (or whatever CODERUNNER_BACKEND says)
    from coderunner.cloud import InstaVM as CodeRunner     # the InstaVM cloud, same methods and results
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ANALYSIS = """
import csv
for row in csv.DictReader(open('sales.csv')):
    totals[row['region']] = totals.get(row['region'], 0) + int(row['amount'])
print(sorted(totals.items()))
"""


def workload(CodeRunner: Any, workdir: Path, **options: Any) -> dict[str, str]:
    """The script being migrated; ``CodeRunner`` is whichever class the import line chose."""
    data = workdir / "sales.csv"
    data.write_text("region,amount\nnorth,120\nsouth,80\nnorth,30\n")
    report: dict[str, str] = {}
    with CodeRunner(**options) as vm:
        vm.execute("totals = {}")  # state persists across calls
        vm.upload_file(str(data), "sales.csv")
        report["totals"] = vm.execute(ANALYSIS)["stdout"].strip()
        report["bash"] = vm.execute("echo $((6 * 7))", language="bash")["stdout"].strip()
        vm.execute("open('report.txt', 'w').write(repr(totals))")
        vm.download_file("report.txt", local_path=str(workdir / "report.txt"))
        report["downloaded"] = (workdir / "report.txt").read_text()
        task_id = vm.execute_async("import time; time.sleep(0.2); print('async done')")
        report["async"] = vm.get_task_result(task_id, timeout=60)["stdout"].strip()
        report["error_status"] = vm.execute("1 / 0")["status"]  # errors in the code are results, not exceptions
    return report


def main(cloud: bool = False, **options: Any) -> dict[str, str]:
    """Run the workload locally, or on InstaVM with ``cloud=True`` (options go to the class, e.g. ``base_url``)."""
    if cloud:
        from coderunner.cloud import InstaVM as CodeRunner
    else:
        from coderunner import CodeRunner
    with tempfile.TemporaryDirectory() as tmp:
        return workload(CodeRunner, Path(tmp), **options)


if __name__ == "__main__":
    for key, value in main(cloud="--cloud" in sys.argv).items():
        print(f"{key:>12}: {value}")
