"""Run every benchmark in this folder and print their JSON results."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import acceptance  # noqa: E402
import encode_throughput  # noqa: E402
import engine_check  # noqa: E402
import epoch_time  # noqa: E402
import flops  # noqa: E402
import mlcolvar_compare  # noqa: E402
import profile_epoch  # noqa: E402
import train_large  # noqa: E402

if __name__ == "__main__":
    epoch_time.main([])
    flops.main([])
    profile_epoch.main([])
    mlcolvar_compare.main([])
    encode_throughput.main([])
    train_large.main([])
    engine_check.main()
    acceptance.main([])
