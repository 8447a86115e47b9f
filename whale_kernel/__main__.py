"""Start the Docker kernel: python -m whale_kernel -f CONNECTION_FILE."""
from __future__ import annotations

import argparse

from .kernel import DockerKernel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m whale_kernel", description=__doc__)
    parser.add_argument("-f", "--connection-file", required=True)
    DockerKernel(parser.parse_args(argv).connection_file).start()


if __name__ == "__main__":
    main()
