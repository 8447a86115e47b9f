"""Start the Docker kernel: python -m whale_kernel -f CONNECTION_FILE."""
from ipykernel.kernelapp import IPKernelApp

from .kernel import DockerKernel

IPKernelApp.launch_instance(kernel_class=DockerKernel)
