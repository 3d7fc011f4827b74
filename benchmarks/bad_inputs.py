"""Print the bad-input matrix of tests/test_bad_inputs.py as a table: each input,
the exit status `slt` gives it and the message a user reads.

    python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slt_cli.cli import app  # noqa: E402
from tests.conftest import TINY_TOML  # noqa: E402
from tests.test_bad_inputs import CASES  # noqa: E402


def main() -> None:
    os.environ["COLUMNS"] = "300"
    print("| bad input | exit | message |\n|---|---|---|")
    for what, make, _, _ in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            os.chdir(scratch)
            Path("tiny.toml").write_text(TINY_TOML)
            CliRunner().invoke(app, ["train", "--config", "tiny.toml", "--stages", "1"])
            result = CliRunner().invoke(app, make(Path(scratch)))
            message = " / ".join(line.replace(scratch + "/", "")
                                 for line in result.stderr.strip().splitlines()[:2])
            print(f"| {what} | {result.exit_code} | `{message}` |")


if __name__ == "__main__":
    main()
