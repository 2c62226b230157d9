"""Quick start: stateful Python, bash and JavaScript sessions on the default (InProcess) backend."""

from __future__ import annotations

import base64

from coderunner import CodeRunner


def main() -> int:
    """Run a short tour and return a process exit status (0 when every step behaved)."""
    with CodeRunner() as runner:
        # State persists between calls in the runner's default session.
        runner.execute("x = 41")
        r = runner.execute("print(x + 1)")
        print("python     ->", r.stdout.strip(), f"({r.execution_time * 1000:.1f} ms, cpu {r.cpu_time} s)")

        # Errors in the user's code are data, not exceptions.
        r = runner.execute("1 / 0")
        print("error      ->", r.status, r.error)

        # bash and JavaScript run in the same session directory, each with its own persistent state.
        runner.execute("cd /tmp && export GREETING=hello", language="bash")
        r = runner.execute('echo "$GREETING from $(pwd)"', language="bash")
        print("bash       ->", r.stdout.strip())
        runner.execute("let total = [1, 2, 3].reduce((a, b) => a + b, 0)", language="javascript")
        r = runner.execute("console.log(`total is ${total}`)", language="javascript")
        print("javascript ->", r.stdout.strip())

        # A runaway loop is interrupted at the time limit; the session and its variables survive.
        r = runner.execute("while True: pass", timeout=1)
        print("timeout    ->", r.status, "| x is still", runner.execute("print(x)").stdout.strip())

        # Files go in and out of the session's working directory.
        runner.write_file("data.csv", "a,b\n1,2\n3,4\n")
        r = runner.execute("import csv; rows = list(csv.DictReader(open('data.csv'))); print(len(rows), 'rows')")
        print("files      ->", r.stdout.strip(), "| files now:", [f.path for f in runner.list_files()])

        # Rich outputs (plots, HTML) come back with their MIME types.
        r = runner.execute(
            "try:\n"
            "    import matplotlib.pyplot as plt\n"
            "    plt.plot([1, 4, 9]); plt.show()\n"
            "except ImportError:\n"
            "    from IPython.display import HTML, display; display(HTML('<b>no matplotlib</b>'))"
        )
        for out in r.outputs:
            if out.png:
                print("image      ->", f"image/png, {len(base64.b64decode(out.png))} bytes")
            elif out.html:
                print("html       ->", out.html)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
