"""Start the Docker kernel: python -m whale_kernel -f CONNECTION_FILE."""
import argparse

from .kernel import DockerKernel

parser = argparse.ArgumentParser(prog="python -m whale_kernel", description=__doc__)
parser.add_argument("-f", "--connection-file", required=True)
DockerKernel(parser.parse_args().connection_file).start()
